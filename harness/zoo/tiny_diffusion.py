"""A tiny pixel-space text-to-image model, built from configs and trained offline.

The same diffusers classes and directory layout as DeepFloyd IF stage I
(`DeepFloyd/IF-I-XL-v1.0`): an `IFPipeline` of a `UNet2DConditionModel` denoising RGB pixels
directly (no VAE), a `T5EncoderModel` text encoder, a tokenizer and a `DDPMScheduler`, saved
with `save_pretrained` so the directory loads through `DiffusionPipeline.from_pretrained`, the
path a real checkpoint takes. Pixel space is the honest choice at 32x32: a VAE would have to
be trained too and would blur objects a few pixels wide. Where it differs from IF stage I
(and from Stable Diffusion, which ForgetMe uses; docs/benchmarks.md "ForgetMe"):
  - sizes: 32x32 pixels, a 3-level UNet of 16/32/32 channels with cross-attention at 8x8 only, a one-layer T5 of width 32;
  - the tokenizer is a word-level `PreTrainedTokenizerFast` (T5's SentencePiece vocabulary
    would dwarf the model); prompts are concept tokens such as "<cat>";
  - the UNet has IF's 6 output channels (IFPipeline splits them in two), but only the noise
    half is trained: the scheduler uses `fixed_small` variance, not IF's `learned_range`;
  - no safety checker, watermarker or feature extractor (IF's optional components);
  - unlike Stable Diffusion there is no VAE: LoRA on the UNet's cross-attention (`attn2`)
    targets the same module names (`to_q`, `to_k`, `to_v`, `to_out.0`).

Models are trained single-threaded (one order of float sums on every host) and cached by
recipe hash under `<cache>/zoo/` with the atomic build-into-place helper of `harness.zoo.tiny`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.io import cache_dir
from harness.zoo.tiny import cached_build, single_threaded

RECIPE_VERSION = "tiny-if-v1"
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
MAX_TEXT_LEN = 77  # IFPipeline pads every prompt to 77 tokens
MARKER = "model_index.json"
UNET_MARKER = "unet/diffusion_pytorch_model.safetensors"


@dataclass(frozen=True)
class TinyDiffusionRecipe:
    """Architecture and training settings (about two minutes on one core)."""

    image_size: int = 32
    channels: tuple[int, ...] = (16, 32, 32)
    text_width: int = 32
    text_layers: int = 1
    steps: int = 600
    batch_size: int = 16
    lr: float = 2e-3
    uncond_prob: float = 0.1  # prompts dropped to "" so classifier-free guidance works
    train_timesteps: int = 1000
    seed: int = 0


def build_word_tokenizer(words: Sequence[str], out_dir: Path):
    """A word-level tokenizer over `words` (split on whitespace), EOS appended, saved as a fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   model_max_length=MAX_TEXT_LEN)
    fast.save_pretrained(out_dir)
    return fast


def build_pipeline(tokenizer: Any, recipe: TinyDiffusionRecipe) -> Any:
    """An untrained IFPipeline of the recipe's sizes."""
    import torch
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(recipe.seed)
    n = len(recipe.channels)
    unet = UNet2DConditionModel(
        sample_size=recipe.image_size, in_channels=3, out_channels=6, layers_per_block=1,
        block_out_channels=recipe.channels,
        # Cross-attention at the coarsest level only (8x8): attention at 16x16 doubles the step time.
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        cross_attention_dim=recipe.text_width, attention_head_dim=8, norm_num_groups=8,
    )
    text = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=recipe.text_width, d_kv=8, d_ff=recipe.text_width * 2,
                                   num_layers=recipe.text_layers, num_heads=recipe.text_width // 8,
                                   relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0))
    scheduler = DDPMScheduler(num_train_timesteps=recipe.train_timesteps, beta_schedule="squaredcos_cap_v2",
                              variance_type="fixed_small", clip_sample=True, prediction_type="epsilon")
    return IFPipeline(tokenizer=tokenizer, text_encoder=text, unet=unet, scheduler=scheduler, safety_checker=None,
                      feature_extractor=None, watermarker=None, requires_safety_checker=False)


def to_tensor(images: Sequence[Any]) -> Any:
    """PIL RGB images -> a float tensor (N, 3, H, W) in [-1, 1], as IFPipeline's pixels are."""
    import numpy as np
    import torch

    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def encode_prompts(pipe: Any, prompts: Sequence[str]) -> Any:
    """Text-encoder states of `prompts`, tokenised exactly as IFPipeline.encode_prompt does."""
    ids = pipe.tokenizer(list(prompts), padding="max_length", max_length=MAX_TEXT_LEN, truncation=True,
                         add_special_tokens=True, return_tensors="pt")
    return pipe.text_encoder(ids.input_ids, attention_mask=ids.attention_mask)[0]


def denoising_loss(pipe: Any, pixels: Any, prompts: Sequence[str], generator: Any) -> Any:
    """The DDPM training loss: MSE of the UNet's noise prediction (its first 3 channels)."""
    import torch
    import torch.nn.functional as F

    noise = torch.randn(pixels.shape, generator=generator)
    t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (pixels.shape[0],), generator=generator)
    noisy = pipe.scheduler.add_noise(pixels, noise, t)
    states = encode_prompts(pipe, prompts)
    pred = pipe.unet(noisy, t, encoder_hidden_states=states).sample[:, :3]
    return F.mse_loss(pred, noise)


def train_diffusion(pipe: Any, images: Sequence[Any], prompts: Sequence[str], recipe: TinyDiffusionRecipe,
                    desc: str = "training") -> list[float]:
    """Train UNet and text encoder from scratch on (image, prompt) pairs (AdamW, one-cycle LR)."""
    import torch
    from rich.progress import Progress

    g = torch.Generator().manual_seed(recipe.seed)
    pixels = to_tensor(images)
    params = list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.05)
    pipe.unet.train()
    pipe.text_encoder.train()
    losses: list[float] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(desc, total=recipe.steps)
        for _ in range(recipe.steps):
            idx = torch.randint(0, len(prompts), (recipe.batch_size,), generator=g)
            drop = torch.rand(recipe.batch_size, generator=g) < recipe.uncond_prob
            batch_prompts = ["" if d else prompts[int(i)] for i, d in zip(idx, drop)]
            loss = denoising_loss(pipe, pixels[idx], batch_prompts, g)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
            progress.update(task, advance=1, description=f"{desc} loss={losses[-1]:.3f}")
    pipe.unet.eval()
    pipe.text_encoder.eval()
    return losses


def recipe_hash(name: str, images: Sequence[Any], prompts: Sequence[str], words: Sequence[str],
                recipe: TinyDiffusionRecipe) -> str:
    h = hashlib.sha256(json.dumps({"v": RECIPE_VERSION, "name": name, "recipe": asdict(recipe), "prompts": list(prompts),
                                   "words": list(words)}, sort_keys=True).encode())
    for im in images:
        h.update(im.tobytes())
    return h.hexdigest()[:16]


def build_diffusion_cached(name: str, images: Sequence[Any], prompts: Sequence[str], words: Sequence[str],
                           recipe: TinyDiffusionRecipe, dry_run: bool = False) -> Path | None:
    """The pipeline directory of this recipe, trained first (single-threaded) when not built.
    `recipe.json` in it records the recipe, the final loss and the training seconds."""

    def build(tmp: Path) -> None:
        start, cpu_start = time.time(), time.process_time()
        tokenizer = build_word_tokenizer(words, tmp / "tokenizer")
        pipe = build_pipeline(tokenizer, recipe)
        losses = single_threaded(train_diffusion, pipe, images, prompts, recipe, desc=f"building {name}")
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / "recipe.json").write_text(json.dumps({
            "recipe": asdict(recipe), "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
            "seconds": round(time.time() - start, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1),
            "n_images": len(images)}, indent=2))

    target = cache_dir() / "zoo" / f"{name}-{recipe_hash(name, images, prompts, words, recipe)}"
    return cached_build(target, build, dry_run, marker=UNET_MARKER)
