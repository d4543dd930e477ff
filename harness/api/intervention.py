"""Interventions: a named, hashable change applied to a model for some requests.

An adapter, a per-item edit, a steering hook or a weight delta changes what a model answers
without changing the model's files. An `Intervention` names such a change by the hash of its
recipe (or of its weights), and that name enters the response-cache key: the same change
asked again is answered from the cache, a different one never is. The runtime half, `enter`,
is a function of the backend that returns a context manager applying the change for the
duration of a batch of requests (and undoing it afterwards, also on errors).

The restoration attack's steering is one case (`kind="steer"`); UnLOK-VQA's per-instance
edit → attack → restore loop is another (`kind="edit"`, one intervention per instance).
"""

from __future__ import annotations

import hashlib
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Intervention:
    """`kind` (steer, edit, adapter, delta) and `digest` (the recipe's or weights' hash) are
    its identity; `name` is for people; `enter(backend)` applies it to the backend's model."""

    kind: str
    digest: str
    name: str = ""
    enter: Callable[[Any], AbstractContextManager] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_recipe(cls, kind: str, recipe: dict[str, Any], enter: Callable[[Any], AbstractContextManager] | None = None,
                    name: str = "") -> "Intervention":
        """An intervention named by the SHA-256 of its recipe (JSON, keys sorted)."""
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        return cls(kind, digest, name, enter)

    @property
    def identity(self) -> str:
        """What the cache key appends to the model's identity."""
        return f"{self.kind}:{self.digest[:16]}"
