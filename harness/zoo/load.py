"""Load a model and its tokenizer (or processor) from a spec (local path or hub id), by model kind.

One loader for every model kind: a causal LM through `AutoModelForCausalLM`, an
image-text-to-text model (LLaVA-style) through `AutoModelForImageTextToText` plus its
`AutoProcessor`, a text-to-image pipeline through diffusers' `DiffusionPipeline` (the
`diffusion` extra). The spec's `kind` picks the class; nothing else differs.

`trust_remote_code` stays off unless the spec opts in. Hub ids resolve from the local HF
cache when HF_HUB_OFFLINE=1 (tests and CI); a missing model is a one-line ModelLoadError.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from harness.errors import ModelLoadError
from harness.zoo.specs import ModelSpec

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_device(device: str | None) -> str:
    import torch

    if device and device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, _DTYPES[dtype])


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel (possibly a PeftModel), or a diffusers pipeline
    tokenizer: Any
    spec: ModelSpec
    path: str
    device: str
    processor: Any = None  # image-text-to-text models: the processor that places images in prompts


# Model kind -> the transformers auto class that loads it.
AUTO_CLASSES = {"causal-lm": "AutoModelForCausalLM", "image-text-to-text": "AutoModelForImageTextToText"}


def load_tokenizer(path: str, spec: ModelSpec) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except Exception as e:  # noqa: BLE001 - every failure here is a bad path or id
        raise ModelLoadError(f"cannot load tokenizer for model {spec.name!r} from {path!r}: {_short(e)}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if spec.chat_template not in ("auto", "none"):
        from pathlib import Path

        tok.chat_template = Path(spec.chat_template).read_text()
    return tok


def load_hf_model(spec: ModelSpec, device: str | None = None, adapter: str | None = None) -> LoadedModel:
    """Load base weights (+ a PEFT adapter: the spec's, or `adapter` given here) in eval mode."""
    import transformers

    spec.check_exists()
    path = spec.resolve_path()
    device = resolve_device(device)
    if spec.kind == "text-to-image":
        return _load_pipeline(spec, path, device, adapter or spec.adapter)
    tok = load_tokenizer(path, spec)
    processor = load_processor(path, spec) if spec.kind == "image-text-to-text" else None
    auto_class = getattr(transformers, AUTO_CLASSES[spec.kind])
    try:
        model = auto_class.from_pretrained(
            path,
            revision=spec.revision,
            dtype=resolve_dtype(spec.dtype, device),
            trust_remote_code=spec.trust_remote_code,
        )
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load model {spec.name!r} from {path!r}: {_short(e)}") from e
    adapter = adapter or spec.adapter
    if adapter:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"cannot load adapter {adapter!r} for model {spec.name!r}: {_short(e)}") from e
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tok, spec=spec, path=path, device=device, processor=processor)


def load_processor(path: str, spec: ModelSpec) -> Any:
    """The processor of an image-text-to-text model (image preprocessing + image placeholders)."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the processor of model {spec.name!r} from {path!r}: {_short(e)}") from e


def _load_pipeline(spec: ModelSpec, path: str, device: str, adapter: str | None = None) -> LoadedModel:
    """A diffusers text-to-image pipeline (local Stable-Diffusion-style directory or pinned hub id).

    `adapter`: a PEFT LoRA directory trained on the UNet (the diffusion methods'), merged into
    the UNet's weights, so the pipeline runs at its plain speed."""
    try:
        from diffusers import DiffusionPipeline
    except ImportError:
        raise ModelLoadError(f"model {spec.name!r} is a text-to-image pipeline: pip install 'llm-safety-harness[diffusion]'") from None
    try:
        pipe = DiffusionPipeline.from_pretrained(path, revision=spec.revision, torch_dtype=resolve_dtype(spec.dtype, device),
                                                 trust_remote_code=spec.trust_remote_code)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load pipeline {spec.name!r} from {path!r}: {_short(e)}") from e
    if adapter:
        from peft import PeftModel

        try:
            unet = PeftModel.from_pretrained(pipe.unet, adapter).merge_and_unload()
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"cannot load UNet adapter {adapter!r} for model {spec.name!r}: {_short(e)}") from e
        pipe.register_modules(unet=unet)
    pipe.to(device)
    return LoadedModel(model=pipe, tokenizer=getattr(pipe, "tokenizer", None), spec=spec, path=path, device=device)


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
