"""Hidden states of a benchmark's items, through the backend's cached `HiddenStatesRequest`.

Layer indices follow HF `hidden_states`: 0 is the embedding output and i ≥ 1 the output of
decoder layer i − 1 (the last one after the final norm). A rerun is served from the response
cache without loading the model.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from harness.errors import ConfigError
from harness.api.requests import HiddenStatesRequest

Span = Literal["answer", "question", "all"]


def state_request(benchmark: Any, item: Any, layers: Sequence[int], span: Span, pooling: str) -> HiddenStatesRequest:
    """`answer`: pooled over the answer tokens after the prompt; `question`: over the prompt;
    `all`: over prompt + answer."""
    prompt, target, images = benchmark.prompt(item), benchmark.target(item.answer), benchmark.images(item)
    if span == "answer":
        return HiddenStatesRequest(prompt, target, layers=tuple(layers), pooling=pooling, images=images)
    if span == "question":
        return HiddenStatesRequest(prompt, "", layers=tuple(layers), pooling=pooling, images=images)
    if span == "all":
        return HiddenStatesRequest(prompt + target, "", layers=tuple(layers), pooling=pooling, images=images)
    raise ConfigError(f"hidden-state span must be 'answer', 'question' or 'all', not {span!r}")


def pooled_states(backend: Any, benchmark: Any, items: Sequence[Any], layers: Sequence[int],
                  span: Span = "answer") -> dict[int, np.ndarray]:
    """layer -> (n_items, d) mean-pooled hidden states."""
    responses = backend.run([state_request(benchmark, i, layers, span, "mean") for i in items])
    return {layer: np.asarray([r.states[layer] for r in responses], dtype=np.float64) for layer in layers}


def token_states(backend: Any, benchmark: Any, items: Sequence[Any], layer: int, span: Span = "all") -> list[np.ndarray]:
    """Per item, the (tokens, d) hidden states at `layer` (no pooling)."""
    responses = backend.run([state_request(benchmark, i, (layer,), span, "per_token") for i in items])
    return [np.asarray(r.states[layer], dtype=np.float32) for r in responses]


def num_layers(backend: Any) -> int:
    """The number of decoder layers of the model behind a (cached) HF backend, from its config
    alone (no weights are loaded)."""
    from transformers import AutoConfig

    inner = getattr(backend, "backend", backend)
    inner = getattr(inner, "primary", inner)  # a routed model: its in-process (HF) half
    loaded = getattr(inner, "_loaded", None)
    if loaded is not None:
        config = loaded.model.config
    else:
        config = AutoConfig.from_pretrained(inner.path, revision=getattr(inner.spec, "revision", None))
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(config.num_hidden_layers)


def default_layers(n_layers: int) -> list[int]:
    """Hidden-state indices at the quarters of the depth (docs/metrics.md §9.4 asks for several
    layers, "every 4th plus the last" on deep models): round(L·q) for q = ¼, ½, ¾, 1."""
    return sorted({max(1, round(n_layers * q)) for q in (0.25, 0.5, 0.75, 1.0)})
