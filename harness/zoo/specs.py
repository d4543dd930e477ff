"""Model specs: what a model name in a config means, and how to load it.

A spec names a hub id or a local path (plus revision, dtype, chat template and preferred
backend). Built-in tiny models carry a `builder` instead: a function that trains the
model offline and returns its directory (cached by content hash). YAML configs extend the
zoo with a `models:` mapping of name -> spec fields.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import ModelLoadError, UnknownNameError


RoutedKind = Literal["generate", "loglikelihood", "hidden_states", "grad_norm"]


class VLLMSettings(BaseModel):
    """vLLM engine settings of one model (harness/backends/vllm.py; multi-GPU: docs/architecture.md).

    `gpu_memory_utilization` defaults to 0.5, not vLLM's 0.9: with the default routing the
    HF backend scores log-likelihoods of the same model on the same GPU and needs room.
    `max_lora_rank` None: the largest adapter rank seen (an engine is rebuilt when a larger
    adapter arrives). `engine_args` passes any other `vllm.LLM` argument through.
    """

    model_config = ConfigDict(extra="forbid")

    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    max_model_len: int | None = Field(None, ge=16)
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1)
    enable_prefix_caching: bool = True
    enable_lora: bool | None = None  # None: when the run has adapters to serve
    max_lora_rank: int | None = Field(None, ge=1)
    max_loras: int = Field(1, ge=1)
    engine_args: dict[str, Any] = Field(default_factory=dict)


class OpenAISettings(BaseModel):
    """An OpenAI-compatible endpoint (harness/backends/openai.py). The key is read from the
    environment variable `api_key_env` at request time; the spec never holds the key itself."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.openai.com/v1"
    model: str = ""  # the served model name; default: the spec's path or name
    api_key_env: str | None = None
    endpoint: Literal["auto", "chat", "completions"] = "auto"  # auto: chat iff the request is chat
    max_concurrency: int = Field(8, ge=1)
    max_retries: int = Field(4, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    deadline_s: float = Field(600.0, gt=0)  # total per request, retries included (timeout_s is per read)
    backoff_s: float = Field(1.0, ge=0)
    max_backoff_s: float = Field(30.0, ge=0)
    identity: str | None = None  # cache identity; default "openai:<base_url>#<model>"


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str = ""  # hub id or local directory; empty for built-ins until built
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: str = "auto"  # "auto": the tokenizer's own; "none": raw prompts; else a Jinja file
    # "auto": generation on vLLM when it is installed and usable, everything else on HF
    # (harness/backends/routing.py); or one backend name for every kind it serves.
    backend: str = "auto"
    backends: dict[RoutedKind, str] = Field(default_factory=dict)  # per request kind, e.g. {generate: vllm}
    vllm: VLLMSettings = Field(default_factory=VLLMSettings)
    openai: OpenAISettings | None = None
    adapter: str | None = None  # a PEFT adapter directory applied on top of `path`
    trust_remote_code: bool = False
    builder: str | None = Field(default=None, description="module:function that builds a built-in model")
    description: str = ""

    @property
    def num_gpus(self) -> int | None:
        """GPUs one vLLM engine of this model spans (tensor x data parallel) when more than
        one; None otherwise, so a scheduler picks its own default (harness/executor.py)."""
        n = self.vllm.tensor_parallel_size * self.vllm.data_parallel_size
        return n if n > 1 else None

    def resolve_path(self) -> str:
        """The local directory (or hub id) to load; builds a built-in model on first use."""
        if self.builder:
            module_name, _, attr = self.builder.partition(":")
            return str(getattr(importlib.import_module(module_name), attr)())
        if not self.path:
            raise ModelLoadError(f"model {self.name!r} has no path")
        return self.path

    def check_exists(self) -> None:
        """Fail early on a local path that does not exist (hub ids are checked at load)."""
        if self.builder:
            return
        p = Path(self.path).expanduser()
        looks_local = self.path.startswith((".", "/", "~")) or p.exists() or self.path.count("/") > 1
        if looks_local and not p.exists():
            raise ModelLoadError(f"model {self.name!r}: path {self.path!r} does not exist")
        if self.adapter and not Path(self.adapter).expanduser().exists():
            raise ModelLoadError(f"model {self.name!r}: adapter {self.adapter!r} does not exist")


BUILTIN_MODELS: dict[str, ModelSpec] = {
    "tiny-facts": ModelSpec(
        name="tiny-facts",
        builder="harness.zoo.tiny:build_tiny_facts",
        chat_template="none",
        dtype="float32",
        description="tiny Llama trained offline on every fictitious-facts entity (the model to unlearn)",
    ),
    "tiny-facts-retain": ModelSpec(
        name="tiny-facts-retain",
        builder="harness.zoo.tiny:build_tiny_facts_retain",
        chat_template="none",
        dtype="float32",
        description="tiny Llama trained without the forget10 entities (the retain-only reference)",
    ),
    "tiny-safety": ModelSpec(
        name="tiny-safety",
        builder="harness.zoo.tiny_safety:build_tiny_safety",
        chat_template="auto",  # its tokenizer's own <|user|>...<|assistant|> template
        dtype="float32",
        description="tiny chat Llama that refuses placeholder harmful requests, with a built-in role-play gap",
    ),
}


class ModelZoo:
    """Name -> ModelSpec: the built-ins plus what a config adds."""

    def __init__(self, extra: dict[str, dict] | None = None):
        self.specs: dict[str, ModelSpec] = dict(BUILTIN_MODELS)
        for name, fields in (extra or {}).items():
            self.specs[name] = ModelSpec(name=name, **fields)

    def get(self, name: str) -> ModelSpec:
        if name in self.specs:
            return self.specs[name]
        # An unregistered name that is a local path or hub id is a model of its own.
        if "/" in name or Path(name).expanduser().exists():
            return ModelSpec(name=name, path=name)
        import difflib

        close = difflib.get_close_matches(name, list(self.specs), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown model {name!r}{hint} (known: {', '.join(sorted(self.specs))})")

    def describe(self) -> list[tuple[str, str]]:
        return [(n, s.description or s.path) for n, s in sorted(self.specs.items())]
