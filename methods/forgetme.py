"""ForgetMe's LoRA and the two baselines it is compared with, as diffusion methods.

  - `forgetme-lora` (Yu et al., arXiv 2504.12574; `scripts/train_lora.py` of
    YuZhenyuLindy/ForgetMe): LoRA on the UNet's cross-attention, trained with the plain
    denoising loss on the *background* images (the object removed) under the constant target
    prompt ("<cat>"): the prompt comes to mean the scene without the object.
  - `inpaint-lora` (the "LoRA+Inpaint" row of ForgetMe's table): the same LoRA, trained on the
    originals with the masked region filled by classical inpainting (harmonic fill from the
    mask's border, the PDE family of OpenCV's Navier-Stokes inpainting) instead of true
    backgrounds: what a data pipeline without a clean background can make.
  - `esd` (Gandikota et al., "Erasing Concepts from Diffusion Models", ICCV 2023; ESD-x):
    negative-guidance fine-tuning of the cross-attention, no data: on noised samples of the
    concept drawn by the frozen model, the adapted UNet's prediction for the concept is pulled
    towards e(x_t, "") - eta (e(x_t, c) - e(x_t, "")) of the frozen UNet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from harness.api.context import RunContext
from harness.methods.diffusion_lora import DiffusionLoRAMethod, text_states, to_model_space


def _forget_items(benchmark: Any) -> list[Any]:
    return benchmark.split(benchmark.forget_split())


class ForgetMeLoRA(DiffusionLoRAMethod):
    """LoRA on the UNet cross-attention, denoising loss on the forget scenes' backgrounds under their prompt."""

    name = "forgetme-lora"

    def training_pairs(self, base: Any, benchmark: Any, ctx: RunContext) -> tuple[list[Any], list[str]]:
        items = [i for i in _forget_items(benchmark) if i.bg is not None]
        return [i.bg.open_image() for i in items], [benchmark.prompt(i) for i in items]


class InpaintLoRA(DiffusionLoRAMethod):
    """The same LoRA on the originals with the mask inpainted (harmonic fill), not true backgrounds."""

    name = "inpaint-lora"

    class Params(DiffusionLoRAMethod.Params):
        fill_iterations: int = Field(300, ge=1, description="averaging sweeps of the harmonic fill")

    def training_pairs(self, base: Any, benchmark: Any, ctx: RunContext) -> tuple[list[Any], list[str]]:
        from PIL import Image

        from harness.metrics.entangled import image_array, mask_array

        items = [i for i in _forget_items(benchmark) if i.orig is not None and i.mask is not None]
        if not items:
            from harness.errors import ConfigError

            raise ConfigError(f"method {self.name!r} needs original images (orig/) and masks in the forget split")
        images = []
        for i in items:
            x = image_array(i.orig)
            filled = harmonic_fill(x, mask_array(i.mask, (x.shape[1], x.shape[0])), self.params.fill_iterations)
            images.append(Image.fromarray((filled * 255).round().astype(np.uint8)))
        return images, [benchmark.prompt(i) for i in items]


def harmonic_fill(image: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """Fill the masked pixels by repeated averaging of their 4 neighbours (a discrete Laplace
    equation with the unmasked pixels as boundary): smooth colour from the border inwards."""
    out = image.copy()
    inside = mask.astype(bool)
    out[inside] = image[~inside].mean(axis=0) if (~inside).any() else 0.5
    for _ in range(iterations):
        padded = np.pad(out, ((1, 1), (1, 1), (0, 0)), mode="edge")
        avg = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
        out[inside] = avg[inside]
    return out


class ESD(DiffusionLoRAMethod):
    """ESD-x: negative guidance on the cross-attention, trained on the frozen model's own samples of the concept."""

    name = "esd"

    class Params(DiffusionLoRAMethod.Params):
        eta: float = Field(1.0, ge=0, description="negative guidance strength")
        samples: int = Field(8, ge=1, description="pictures of the concept the frozen model draws to train on")
        sample_steps: int = Field(20, ge=1, description="denoising steps of those pictures")

    def prepare(self, base: Any, benchmark: Any, ctx: RunContext) -> None:
        from harness.api.requests import ImageGenerationRequest

        concept = benchmark.prompt(_forget_items(benchmark)[0])
        # The frozen model's own pictures, through the run's (cached) backend: a rerun draws nothing.
        backend = ctx.backends.in_memory(base)
        requests = [ImageGenerationRequest(prompt=concept, seed=ctx.seed * 1000 + k, steps=self.params.sample_steps)
                    for k in range(self.params.samples)]
        images = [r.images[0].open_image() for r in backend.run(requests)]
        self._pixels = to_model_space(base.model, images)
        self._concept = concept
        self.prepare_retain(base, benchmark)

    def loss(self, pipe: Any, unet: Any, generator: Any) -> Any:
        import torch
        import torch.nn.functional as F

        n = self.params.batch_size
        idx = torch.randint(0, self._pixels.shape[0], (n,), generator=generator)
        x0 = self._pixels[idx]
        noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (n,), generator=generator).to(x0.device)
        xt = pipe.scheduler.add_noise(x0, noise, t)
        c, empty = text_states(pipe, [self._concept] * n), text_states(pipe, [""] * n)
        ch = x0.shape[1]
        with torch.no_grad():
            e_c = pipe.unet(xt, t, encoder_hidden_states=c).sample[:, :ch]
            e_0 = pipe.unet(xt, t, encoder_hidden_states=empty).sample[:, :ch]
        target = e_0 - self.params.eta * (e_c - e_0)
        return F.mse_loss(unet(xt, t, encoder_hidden_states=c).sample[:, :ch], target) + self.retain_loss(pipe, unet, generator)
