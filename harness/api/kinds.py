"""Request kinds and model kinds, each declared once.

A request kind names one thing a metric can ask of a model. Its declaration carries the
request type, the response type and the cache-key rule; everything else reads it from here:
the backends' `run` dispatch (a backend answers kind `k` with its method named `k`), routing,
capability checks in `harness validate`, and the response cache's decoding. Adding a kind is
one `@request_kind` declaration plus the backends that serve it (docs/architecture.md shows a
worked example).

A model kind says what a model takes and gives (text in and out, images and text in, images
out); the zoo's loader picks the model class by it and validation checks that a benchmark's
requests fit the model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from harness.errors import HarnessError

ModelKind = Literal["causal-lm", "image-text-to-text", "text-to-image"]
MODEL_KINDS: tuple[str, ...] = ("causal-lm", "image-text-to-text", "text-to-image")
# Model kinds that can read images in a request.
SEES_IMAGES: frozenset[str] = frozenset({"image-text-to-text"})


@dataclass(frozen=True)
class RequestKind:
    """One request kind: its request and response types and how its cache key is built.

    `key_omit_at_default`: request fields added after answers were first cached, left out of
    the key while at their default so existing entries keep their keys. `decode` rebuilds a
    response from its JSON fields (default: the response type's constructor).
    """

    name: str
    request: type
    response: type
    key_omit_at_default: dict[str, Any] = field(default_factory=dict)
    decode: Callable[[dict[str, Any]], Any] | None = None

    def response_from_fields(self, fields: dict[str, Any]) -> Any:
        return self.decode(fields) if self.decode is not None else self.response(**fields)

    def key_fields(self, request: Any) -> dict[str, Any]:
        """The request's fields as they enter its cache key (media by content hash only)."""
        fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
        for name, default in self.key_omit_at_default.items():
            if name in fields and fields[name] == default:
                del fields[name]
        return {k: _key_value(v) for k, v in fields.items()}


_KINDS: dict[str, RequestKind] = {}


def request_kind(name: str, response: type, *, key_omit_at_default: dict[str, Any] | None = None,
                 decode: Callable[[dict[str, Any]], Any] | None = None) -> Callable[[type], type]:
    """Class decorator declaring a frozen request dataclass as kind `name`.

    The class gets a `kind` class attribute; the declaration is what backends, routing, the
    cache and validation read."""

    def register(cls: type) -> type:
        if name in _KINDS and _KINDS[name].request is not cls:
            raise HarnessError(f"request kind {name!r} is declared twice ({_KINDS[name].request.__name__}, {cls.__name__})")
        cls.kind = name  # type: ignore[attr-defined]
        _KINDS[name] = RequestKind(name, cls, response, dict(key_omit_at_default or {}), decode)
        return cls

    return register


def kind(name: str) -> RequestKind:
    _ensure_builtins()
    if name not in _KINDS:
        raise HarnessError(f"unknown request kind {name!r} (known: {', '.join(sorted(_KINDS))})")
    return _KINDS[name]


def kind_names() -> tuple[str, ...]:
    """Every declared request kind, in declaration order."""
    _ensure_builtins()
    return tuple(_KINDS)


def _ensure_builtins() -> None:
    import harness.api.requests  # noqa: F401 - declares the built-in kinds


def _key_value(value: Any) -> Any:
    """Values as they enter a cache key: media references by their content hash."""
    if isinstance(value, tuple):
        return [_key_value(v) for v in value]
    key = getattr(value, "cache_key", None)
    if callable(key):
        return key()
    return value


def stable_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
