"""Diffusion unlearning methods: LoRA on a text-to-image UNet's cross-attention (PEFT).

The same plug-in contract as the text methods (`Method.apply(base, benchmark, ctx) ->
ModelArtifact`); `base.model` is a diffusers pipeline. A subclass says what to train on:

  - `DiffusionLoRAMethod` (data methods): override `training_pairs` -> (pictures, prompts);
    the loss is the ordinary denoising loss on them. ForgetMe's LoRA and the inpaint
    baseline are two lines each (methods/forgetme.py);
  - or override `loss` (ESD's negative guidance needs the frozen UNet's predictions).

LoRA targets the UNet's cross-attention projections (`attn2.to_q/to_k/to_v/to_out.0`, the
module names of every diffusers UNet2DConditionModel, Stable Diffusion's included), as
ForgetMe's `train_lora.py` does. The base pipeline is never changed: the UNet is copied
before the adapter goes on. Pixels go through the pipeline's VAE when it has one (Stable
Diffusion), straight to the UNet when it has none (pixel-space IF-style models). The adapter
is saved as a PEFT directory; the loader merges it into the UNet for evaluation.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Literal, Sequence

from pydantic import Field

from harness.api.context import RunContext
from harness.api.method import Method
from harness.artifacts import ModelArtifact
from harness.zoo.tiny import single_threaded  # one float-sum order on CPU: the same adapter on every host

TARGETS = {
    "cross_attention": r".*attn2\.(to_q|to_k|to_v|to_out\.0)$",
    "cross_attention_kv": r".*attn2\.(to_k|to_v)$",  # only the projections of the text states
    "attention": r".*attn[12]\.(to_q|to_k|to_v|to_out\.0)$",  # what ForgetMe's train_lora.py adapts in fact
}


class DiffusionLoRAMethod(Method):
    """Train a LoRA adapter on a text-to-image UNet; subclasses give the data or the loss."""

    class Params(Method.Params):
        rank: int = Field(8, ge=1, description="LoRA rank")
        alpha: int = Field(8, ge=1, description="LoRA alpha (scale = alpha / rank)")
        lr: float = Field(2e-3, gt=0, description="AdamW learning rate")
        steps: int = Field(150, ge=1, description="optimiser steps")
        batch_size: int = Field(8, ge=1, description="pictures per step (and per retain step)")
        target: Literal["cross_attention", "cross_attention_kv", "attention"] = Field(
            "cross_attention", description="UNet modules LoRA adapts: attn2 q/k/v/out, attn2 k/v only, or attn1+attn2")
        retain_weight: float = Field(0.0, ge=0, description=(
            "weight of a denoising loss on the retain split's originals under their own prompts (DreamBooth-style "
            "prior preservation); 0 = the published method, no retain term"))

    def training_pairs(self, base: Any, benchmark: Any, ctx: RunContext) -> tuple[list[Any], list[str]]:
        """(PIL pictures, prompts) the adapter learns to draw for those prompts."""
        raise NotImplementedError(f"{type(self).__name__} gives neither training_pairs nor loss")

    def prepare(self, base: Any, benchmark: Any, ctx: RunContext) -> None:
        """Set-up before training (data, frozen predictions); the default makes the training pairs."""
        images, prompts = self.training_pairs(base, benchmark, ctx)
        self._pixels = to_model_space(base.model, images)
        self._prompts = list(prompts)
        self.prepare_retain(base, benchmark)

    def prepare_retain(self, base: Any, benchmark: Any) -> None:
        """The retain term's data (the retain split's originals and prompts) when `retain_weight` > 0."""
        self._retain = None
        if self.params.retain_weight > 0:
            items = [i for i in benchmark.split(benchmark.retain_split()) if getattr(i, "orig", None) is not None]
            if items:
                self._retain = (to_model_space(base.model, [i.orig.open_image() for i in items]),
                                [benchmark.prompt(i) for i in items])

    def loss(self, pipe: Any, unet: Any, generator: Any) -> Any:
        """One step's loss: the denoising loss on a batch of the training pairs (+ the retain term)."""
        loss = denoising_loss(pipe, unet, self._pixels, self._prompts, self.params.batch_size, generator)
        return loss + self.retain_loss(pipe, unet, generator)

    def retain_loss(self, pipe: Any, unet: Any, generator: Any) -> Any:
        """`retain_weight` x the denoising loss on a batch of retain pictures (0 without a retain term)."""
        if getattr(self, "_retain", None) is None:
            return 0.0
        return self.params.retain_weight * denoising_loss(pipe, unet, *self._retain, self.params.batch_size, generator)

    def apply(self, base: Any, benchmark: Any, ctx: RunContext) -> ModelArtifact:
        import torch
        from peft import LoraConfig, get_peft_model

        from harness.fingerprint import directory_fingerprint

        p = self.params
        out, _, _ = self.start(base, ctx, seed_all=False)
        pipe = base.model
        start = time.time()
        self.prepare(base, benchmark, ctx)
        unet = copy.deepcopy(pipe.unet)  # the base pipeline stays as it was (other methods train from it)
        config = LoraConfig(r=p.rank, lora_alpha=p.alpha, init_lora_weights="gaussian",
                            target_modules=TARGETS[p.target])
        model = get_peft_model(unet, config)
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=0.0)
        g = torch.Generator().manual_seed(ctx.seed)
        model.train()
        losses = single_threaded(self._train, pipe, model, opt, params, g) if pipe.device.type == "cpu" \
            else self._train(pipe, model, opt, params, g)
        model.eval()
        target = out / "adapter"
        model.save_pretrained(target, safe_serialization=True)
        return ModelArtifact(method=self.name, base_model=base.spec.name, adapter_path=str(target),
                             hash=directory_fingerprint(target), hparams=p.model_dump(),
                             train_stats={"steps": p.steps, "first_loss": losses[0] if losses else None,
                                          "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
                                          "seconds": round(time.time() - start, 1)})


    def _train(self, pipe: Any, model: Any, opt: Any, params: list[Any], generator: Any) -> list[float]:
        import torch

        losses = []
        for _ in range(self.params.steps):
            loss = self.loss(pipe, model, generator)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
        return losses


def denoising_loss(pipe: Any, unet: Any, pixels: Any, prompts: Sequence[str], batch_size: int, generator: Any) -> Any:
    """The DDPM loss on a random batch of (pixels, prompts): MSE of the predicted noise."""
    import torch
    import torch.nn.functional as F

    idx = torch.randint(0, len(prompts), (batch_size,), generator=generator)
    x0 = pixels[idx]
    # Drawn on the CPU generator, then moved: the same draws on any device.
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (len(idx),), generator=generator).to(x0.device)
    states = text_states(pipe, [prompts[int(i)] for i in idx])
    pred = unet(pipe.scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=states).sample[:, : x0.shape[1]]
    return F.mse_loss(pred, noise)


def text_states(pipe: Any, prompts: Sequence[str]) -> Any:
    """The frozen text encoder's states of `prompts`, as the pipeline encodes them."""
    import torch

    from harness.backends.diffusion import encode_prompt

    with torch.no_grad():
        return encode_prompt(pipe, list(prompts))


def to_model_space(pipe: Any, images: Sequence[Any]) -> Any:
    """PIL pictures as the UNet sees them: VAE latents (scaled) when the pipeline has a VAE,
    else pixels in [-1, 1] at the UNet's sample size."""
    import numpy as np
    import torch
    from PIL import Image

    vae = getattr(pipe, "vae", None)
    size = pipe.unet.config.sample_size * (getattr(pipe, "vae_scale_factor", 1) if vae is not None else 1)
    arr = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)
                    for im in images]) / 127.5 - 1.0
    pixels = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(pipe.unet.device, pipe.unet.dtype)
    if vae is None:
        return pixels
    with torch.no_grad():
        return vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
