"""Steering a model's residual stream with SAE expert codes (docs/metrics.md §4.4, §4.6).

Two modes, as `suppression-or-deletion/utils/hook_utils.py::SAERestorationHook` [code]:
- `direct_injection`: the original model runs on the same tokens alongside the steered one;
  at layer ℓ the steered model's pre-activation codes `z_u = W_e(H_unl − b)` take
  `z_r[:, j] = z_u[:, j] + α·(z_o[:, j] − z_u[:, j])` on the expert latents j, with
  `z_o = W_e(H_orig − b)`. `patch="linear"` (the code's behaviour) outputs `W_d·z_r + b`, so
  the non-expert part is the linear encode→decode of `H_unl`; `patch="residual"` [proposal]
  outputs `H_unl + W_d(z_r − z_u)`, changing only the expert directions (the usual way to keep
  the SAE's reconstruction error out of the patch).
- `add`: `H + W_d(α·a_E) (+ b)`, with `a = W_e(H − b)` of the steered model itself restricted
  to the experts E; the code also adds the pre-bias `b` (`add_bias`).
The LM adaptation [proposal] steers every position of every input (prompt and generated
tokens). In generation the original model keeps its own KV cache in step with the steered
model's, so it sees exactly the same tokens.

Hooks live in context managers and are removed on exit, exceptions included.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Literal

import torch

from harness.errors import ConfigError
from harness.representations.layers import decoder_layers

SteeringMode = Literal["direct_injection", "add"]
PatchKind = Literal["linear", "residual"]


def _expert_mask(width: int, experts: list[int], device: Any, dtype: Any) -> torch.Tensor:
    mask = torch.zeros(width, device=device, dtype=dtype)
    if experts:
        mask[torch.as_tensor(experts, device=device)] = 1
    return mask


def direct_injection_patch(sae: Any, h_unl: torch.Tensor, h_orig: torch.Tensor, experts: list[int],
                           alpha: float, patch: PatchKind = "linear") -> torch.Tensor:
    """The steered layer output for `direct_injection` (see the module docstring)."""
    sae = sae.to(device=h_unl.device, dtype=h_unl.dtype)
    z_u, z_o = sae.pre_codes(h_unl), sae.pre_codes(h_orig.to(h_unl.dtype))
    mask = _expert_mask(z_u.shape[-1], experts, z_u.device, z_u.dtype)
    z_r = z_u + alpha * mask * (z_o - z_u)
    if patch == "linear":
        return sae.decode(z_r)
    if patch == "residual":
        return h_unl + sae.decoder(z_r - z_u)
    raise ConfigError(f"steering patch must be 'linear' or 'residual', not {patch!r}")


def add_patch(sae: Any, h: torch.Tensor, experts: list[int], alpha: float, add_bias: bool = True) -> torch.Tensor:
    """The steered layer output for `add`: `H + W_d(α·a_E) (+ b)`, `a = W_e(H − b)`."""
    sae = sae.to(device=h.device, dtype=h.dtype)
    a = sae.pre_codes(h)
    mask = _expert_mask(a.shape[-1], experts, a.device, a.dtype)
    out = h + sae.decoder(alpha * mask * a)
    return out + sae.pre_bias if add_bias else out


@contextmanager
def replace_layer_output(model: Any, layer: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While active, decoder layer `layer`'s output hidden state `h` becomes `fn(h)`."""
    module = decoder_layers(model)[1][layer]

    def hook(_mod: Any, _args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _decoder_owner(model: Any) -> Any:
    """The module that owns the decoder layers (LlamaModel under LlamaForCausalLM or PEFT)."""
    name, _ = decoder_layers(model)
    return model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model


class OriginalTap:
    """Runs the original model on the steered model's inputs and keeps its layer-ℓ output.

    A forward pre-hook on the steered model's decoder sees every call's inputs; the original
    decoder runs on the same ids, mask and positions. With a KV cache (generation), the
    original keeps its own cache, restarted whenever the steered model's cache is empty.
    """

    def __init__(self, original: Any, layer: int):
        self.original = original
        self.layer = layer
        self.owner = _decoder_owner(original)
        self.latest: torch.Tensor | None = None
        self._cache: Any = None

    def pre_hook(self, _module: Any, args: tuple, kwargs: dict) -> None:
        from transformers import DynamicCache

        key = "cache" if "cache" in kwargs else "past_key_values"
        theirs = kwargs.get(key)
        kw = {k: v for k, v in kwargs.items() if k not in ("cache", "past_key_values", "output_hidden_states",
                                                           "output_attentions", "return_dict")}
        if theirs is not None:
            if theirs.get_seq_length() == 0 or self._cache is None:
                self._cache = DynamicCache(config=self.original.config)
            kw[key] = self._cache
            kw["use_cache"] = True
        else:
            self._cache = None
            kw["use_cache"] = False
        with torch.no_grad(), self._capture():
            self.owner(*args, **kw)

    @contextmanager
    def _capture(self) -> Iterator[None]:
        def keep(h: torch.Tensor) -> torch.Tensor:
            self.latest = h
            return h

        with replace_layer_output(self.original, self.layer, keep):
            yield


@contextmanager
def steering(model: Any, layer: int, sae: Any, experts: list[int], mode: SteeringMode, alpha: float,
             original: Any = None, patch: PatchKind = "linear", add_bias: bool = True) -> Iterator[None]:
    """While active, `model` runs steered at decoder layer `layer` (see the module docstring).

    `direct_injection` needs `original` (the original model, same architecture and tokenizer).
    """
    n = len(decoder_layers(model)[1])
    if not 0 <= layer < n:
        raise ConfigError(f"steering layer {layer} is out of range; the model has {n} decoder layers")
    with ExitStack() as stack:
        if mode == "direct_injection":
            if original is None:
                raise ConfigError("direct_injection steering needs the original model")
            tap = OriginalTap(original, layer)
            handle = _decoder_owner(model).register_forward_pre_hook(tap.pre_hook, with_kwargs=True)
            stack.callback(handle.remove)

            def fn(h: torch.Tensor) -> torch.Tensor:
                if tap.latest is None or tap.latest.shape != h.shape:
                    raise RuntimeError("direct_injection: the original model's activations do not match the "
                                       f"steered model's ({None if tap.latest is None else tuple(tap.latest.shape)} "
                                       f"vs {tuple(h.shape)})")
                return direct_injection_patch(sae, h, tap.latest, experts, alpha, patch)
        elif mode == "add":
            def fn(h: torch.Tensor) -> torch.Tensor:
                return add_patch(sae, h, experts, alpha, add_bias)
        else:
            raise ConfigError(f"steering mode must be 'direct_injection' or 'add', not {mode!r}")
        stack.enter_context(replace_layer_output(model, layer, fn))
        yield
