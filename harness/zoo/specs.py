"""Model specs: what a model name in a config means, and how to load it.

A spec names a hub id or a local path (plus revision, dtype, chat template and preferred
backend). Built-in tiny models carry a `builder` instead: a function that trains the
model offline and returns its directory (cached by content hash). YAML configs extend the
zoo with a `models:` mapping of name -> spec fields.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import ModelLoadError, UnknownNameError


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str = ""  # hub id or local directory; empty for built-ins until built
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: str = "auto"  # "auto": the tokenizer's own; "none": raw prompts; else a Jinja file
    backend: str = "hf"
    adapter: str | None = None  # a PEFT adapter directory applied on top of `path`
    trust_remote_code: bool = False
    builder: str | None = Field(default=None, description="module:function that builds a built-in model")
    description: str = ""

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
