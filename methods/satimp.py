"""SatImp — saturation–importance weighted gradient ascent (docs/methods.md §5.9)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from harness.methods.grad_diff import GradDiff
from harness.methods.losses import satimp_loss


class SatImp(GradDiff):
    """Gradient ascent with token weights p^β1·(1 − p)^β2 (peak at p = β1/(β1 + β2), 5/6 by default).

    L = γ·L_forget + α·L_retain, with L_forget = −mean_t[p_t^β1·(1 − p_t)^β2·CE_t], p_t = exp(−CE_t),
    the mean over every answer token of the batch (open-unlearning `compute_satimp_loss`).
    Whether the reference detaches the weights is unverified; [proposal] `detach_weights=True`
    (as WGA) by default, `False` lets the gradient flow through them. Defaults: β1 = 5, β2 = 1,
    γ = 0.1, α = 1, retain NLL (`retain_loss_type`, as GradDiff).
    """

    name: ClassVar[str] = "satimp"

    class Params(GradDiff.Params):
        beta1: float = Field(5.0, ge=0)
        beta2: float = Field(1.0, ge=0)
        gamma: float = 0.1
        detach_weights: bool = True

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        p = self.params
        return satimp_loss(model(**forget).logits, forget["labels"], p.beta1, p.beta2, p.detach_weights)
