"""Model specs: what a model name in a config means, and how to load it.

A spec names a hub id or a local path (plus revision, dtype, chat template and preferred
backend). Built-in tiny models carry a `builder` instead: a function that trains the
model offline and returns its directory (cached by content hash). YAML configs extend the
zoo with a `models:` mapping of name -> spec fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.api.kinds import ModelKind
from harness.errors import ModelLoadError, UnknownNameError


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
    # What the model takes and gives: the loader picks its class by it (harness/zoo/load.py).
    kind: ModelKind = "causal-lm"
    path: str = ""  # hub id or local directory; empty for built-ins until built
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: str = "auto"  # "auto": the tokenizer's own; "none": raw prompts; else a Jinja file
    # "auto": generation on vLLM when it is installed and usable, everything else on HF
    # (harness/backends/routing.py); or one backend name for every kind it serves.
    backend: str = "auto"
    backends: dict[str, str] = Field(default_factory=dict)  # per request kind, e.g. {generate: vllm}
    vllm: VLLMSettings = Field(default_factory=VLLMSettings)
    openai: OpenAISettings | None = None
    adapter: str | None = None  # a PEFT adapter directory applied on top of `path`
    trust_remote_code: bool = False
    builder: str | None = Field(default=None, description="name of a registered builder (harness.catalog.BUILDERS)")
    description: str = ""

    @field_validator("backends")
    @classmethod
    def _known_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        from harness.api.kinds import kind_names

        unknown = sorted(set(value) - set(kind_names()))
        if unknown:
            raise ValueError(f"unknown request kind(s) {', '.join(map(repr, unknown))} (known: {', '.join(kind_names())})")
        return value

    def recipe_fields(self) -> dict[str, Any]:
        """The spec as it enters recipe and config hashes. Fields added later are left out
        while at their default, so results written before they existed keep their hashes."""
        data = self.model_dump()
        if data.get("kind") == "causal-lm":
            del data["kind"]
        return data

    @property
    def num_gpus(self) -> int | None:
        """GPUs one vLLM engine of this model spans (tensor x data parallel) when more than
        one; None otherwise, so a scheduler picks its own default (harness/executor.py)."""
        n = self.vllm.tensor_parallel_size * self.vllm.data_parallel_size
        return n if n > 1 else None

    def resolve_path(self) -> str:
        """The local directory (or hub id) to load; builds a built-in model on first use."""
        if self.builder:
            return str(self.build_function()())
        if not self.path:
            raise ModelLoadError(f"model {self.name!r} has no path")
        return self.path

    def build_function(self) -> Any:
        """The registered builder this spec names (built-ins and `harness.builders` entry points only)."""
        from harness.catalog import BUILDERS

        if self.builder not in BUILDERS:
            raise ModelLoadError(f"model {self.name!r}: {BUILDERS.unknown_message(self.builder or '')} "
                                 "(a config names a registered builder; it cannot import code)")
        return BUILDERS.get(self.builder)

    def check_exists(self) -> None:
        """Fail early on a local path that does not exist (hub ids are checked at load)."""
        if self.builder:
            self.build_function()
            return
        p = Path(self.path).expanduser()
        looks_local = self.path.startswith((".", "/", "~")) or p.exists() or self.path.count("/") > 1
        if looks_local and not p.exists():
            raise ModelLoadError(f"model {self.name!r}: path {self.path!r} does not exist")
        if self.adapter and not Path(self.adapter).expanduser().exists():
            raise ModelLoadError(f"model {self.name!r}: adapter {self.adapter!r} does not exist")


class ModelZoo:
    """Name -> ModelSpec: the built-ins plus what a config adds."""

    def __init__(self, extra: dict[str, dict] | None = None):
        self.specs: dict[str, ModelSpec] = {}
        for name, fields in (extra or {}).items():
            self.specs[name] = ModelSpec(name=name, **fields)

    def get(self, name: str) -> ModelSpec:
        from harness.catalog import MODELS

        if name in self.specs:
            return self.specs[name]
        if name in MODELS:  # the built-ins, registered beside their benchmarks (imported on use)
            return MODELS.get(name)
        # An unregistered name that is a local path or hub id is a model of its own.
        if "/" in name or Path(name).expanduser().exists():
            return ModelSpec(name=name, path=name)
        import difflib

        known = sorted(set(self.specs) | set(MODELS.names()))
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown model {name!r}{hint} (known: {', '.join(known)})")

    def describe(self) -> list[tuple[str, str]]:
        from harness.catalog import MODELS

        mine = {n: s.description or s.path for n, s in self.specs.items()}
        return sorted({**dict(MODELS.describe()), **mine}.items())
