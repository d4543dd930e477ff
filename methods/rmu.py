"""RMU — Representation Misdirection for Unlearning (docs/methods.md §5.6)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field

from harness.errors import ConfigError
from harness.representations.layers import decoder_layers, layer_output
from harness.api.method import ReferenceModel
from harness.api.training import model_inputs
from harness.methods.grad_diff import GradDiff
from harness.api.training import IGNORE_INDEX
from harness.methods.losses import masked_activation_mse, retain_loss

if TYPE_CHECKING:
    from harness.zoo.load import LoadedModel

class RMU(GradDiff):
    """Push forget activations at one layer toward a fixed random direction; keep retain activations.

    h = the output of decoder layer `layer` (a forward hook; equal to HF's `hidden_states[layer + 1]`,
    except for the last layer, whose HF hidden state is taken after the final norm), at every answer token (labels ≠ −100, unshifted, as open-unlearning). Control vector
    u ~ U[0, 1)^d, u ← u/‖u‖, drawn once per run from a generator seeded with the run seed; target c·u
    with c = `steering_coeff`. L = γ·L_forget + α·L_retain, with (`losses.masked_activation_mse`):
    - L_forget: per token the mean over d of (h_θ − c·u)², summed over answer tokens, divided by their
      count, then the mean over the batch;
    - L_retain (`EMBED_DIFF`, default): the same masked MSE between the θ-model's and the frozen
      reference's activations at that layer, on retain inputs (`NLL` or `KL` as GradDiff also work).

    Defaults (open-unlearning TOFU config): c = 2, γ = α = 1, all parameters trained (`peft: full`;
    LoRA works too). Gotcha: open-unlearning's class default is c = 20 when the config does not set it.
    The spec's layer 7 suits 1B+ models; `layer: None` (default) means the middle layer,
    `len(layers) // 2`, so the tiny models get a valid index. The resolved layer is model-specific
    and recorded in the artefact's `train_stats` (`rmu_layer`, `rmu_module`, `rmu_n_layers`).
    """

    name: ClassVar[str] = "rmu"
    needs_reference: ClassVar[bool] = True  # the EMBED_DIFF retain term reads the frozen activations

    class Params(GradDiff.Params):
        peft: Literal["lora", "full"] = "full"
        steering_coeff: float = 2.0
        layer: int | None = Field(None, ge=0)  # None: the middle decoder layer, len(layers) // 2
        retain_loss_type: Literal["EMBED_DIFF", "NLL", "KL"] = "EMBED_DIFF"

    def __init__(self, **hparams: Any):
        super().__init__(**hparams)
        self._seed = 0
        self._control: torch.Tensor | None = None
        self._resolved: dict[str, Any] = {}

    def resolve_layer(self, model: Any) -> int:
        """The decoder layer index used for `model`: `layer`, or the middle one when None."""
        name, layers = decoder_layers(model)
        n = len(layers)
        layer = n // 2 if self.params.layer is None else self.params.layer
        if not 0 <= layer < n:
            raise ConfigError(f"method {self.name!r}: layer {layer} is out of range; the model has {n} decoder layers")
        self._resolved = {"rmu_layer": layer, "rmu_module": f"{name}.{layer}", "rmu_n_layers": n}
        return layer

    def control_vector(self, dim: int, device: Any = None, dtype: Any = None) -> torch.Tensor:
        """c·u/‖u‖ with u ~ U[0, 1)^dim from a generator seeded with the run seed (0 until
        `on_train_start` sets it); drawn once and kept fixed."""
        if self._control is None or self._control.shape[-1] != dim:
            u = torch.rand(dim, generator=torch.Generator().manual_seed(self._seed))
            self._control = self.params.steering_coeff * u / u.norm()
        return self._control.to(device=device, dtype=dtype)

    def on_train_start(self, model: Any, ref_model: ReferenceModel, base: "LoadedModel", seed: int) -> None:
        self._seed, self._control = seed, None
        self.resolve_layer(model)

    def extra_train_stats(self) -> dict[str, Any]:
        return {**self._resolved, "rmu_control_seed": self._seed}

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        batch = model_inputs(forget)
        h = layer_output(model, self.resolve_layer(model), batch)
        target = self.control_vector(h.shape[-1], h.device, h.dtype)
        return masked_activation_mse(h, target, batch["labels"] != IGNORE_INDEX)

    def retain_loss(self, model: Any, retain: dict, ref_model: Any) -> torch.Tensor:
        if self.params.retain_loss_type != "EMBED_DIFF":
            return retain_loss(model, retain, ref_model, self.params.retain_loss_type)
        batch = model_inputs(retain)
        layer = self.resolve_layer(model)
        h = layer_output(model, layer, batch)
        ref_module = ref_model.model if isinstance(ref_model, ReferenceModel) else ref_model
        if ref_module is None:
            ref_model(**batch)  # raises the "needs_reference" error
        h_ref = layer_output(ref_module, layer, batch, call=ref_model)
        return masked_activation_mse(h, h_ref.to(h.device), batch["labels"] != IGNORE_INDEX)

    def loss(self, model: Any, forget: dict, retain: dict | None, ref_model: Any) -> torch.Tensor:
        p = self.params
        total = p.gamma * self.forget_loss(model, forget, ref_model)
        if retain is not None and p.alpha != 0:
            total = total + p.alpha * self.retain_loss(model, retain, ref_model)
        return total
