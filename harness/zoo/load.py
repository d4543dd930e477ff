"""Load a Hugging Face causal LM and tokenizer from a spec (local path or hub id).

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
    model: Any  # transformers PreTrainedModel (possibly a PeftModel)
    tokenizer: Any
    spec: ModelSpec
    path: str
    device: str


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
    from transformers import AutoModelForCausalLM

    spec.check_exists()
    path = spec.resolve_path()
    device = resolve_device(device)
    tok = load_tokenizer(path, spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(
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
    return LoadedModel(model=model, tokenizer=tok, spec=spec, path=path, device=device)


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
