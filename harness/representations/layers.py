"""Where a representation lives in a model: its decoder-layer list, and one layer's output.

Shared by the methods that act on one layer's activations (RMU) and the representation
attacks that read or steer them (harness/representations/steering.py).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.errors import ConfigError

_LAYER_LIST_NAMES = ("layers", "h", "blocks")


def decoder_layers(model: Any) -> tuple[str, torch.nn.ModuleList]:
    """The model's decoder-layer list and its qualified name (`model.layers` for Llama-like models;
    `base_model.model.model.layers` under PEFT): the language model's own (`get_decoder().layers`,
    so a VLM's, not its vision tower's), else the outermost `ModuleList` named layers/h/blocks."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    own = getattr(decoder, "layers", None)
    for name, module in model.named_modules():
        if module is own and isinstance(module, torch.nn.ModuleList):
            return name, module
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in _LAYER_LIST_NAMES:
            return name, module
    raise ConfigError(f"cannot find the decoder layers of {type(model).__name__} (no ModuleList named layers/h/blocks)")


def layer_output(model: Any, layer: int, batch: dict, call: Any = None) -> torch.Tensor:
    """The output hidden state (B, T, d) of decoder layer `layer` of `model` on `batch`.

    A forward hook on `decoder_layers(model)[layer]` records its output (`output[0]` when the layer
    returns a tuple) and is removed afterwards, whatever happens. `call` runs the forward (default
    `model` itself; RMU passes the `ReferenceModel` to get the frozen activations).
    """
    module = decoder_layers(model)[1][layer]
    seen: list[torch.Tensor] = []

    def hook(_mod: Any, _args: Any, output: Any) -> None:
        if not seen:
            seen.append(output[0] if isinstance(output, tuple) else output)

    handle = module.register_forward_hook(hook)
    try:
        (call or model)(**batch)
    finally:
        handle.remove()
    if not seen:
        raise RuntimeError(f"decoder layer {layer} did not run in the forward pass")
    return seen[0]
