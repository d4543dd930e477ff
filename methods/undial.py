"""UNDIAL — self-distillation with adjusted logits (docs/methods.md §5.7)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from harness.methods.grad_diff import GradDiff
from harness.methods.losses import undial_loss


class UNDIAL(GradDiff):
    """Distil from the starting model toward its own distribution with the gold token demoted.

    Per position t (logits at t predict y_{t+1}): teacher logits z_ref from the frozen reference,
    z̃ = z_ref − β·onehot(y_{t+1}), q = softmax(z̃), loss CE(q, π_θ) = −Σ_v q_v log π_θ(v | ·),
    averaged over positions (`losses.undial_loss`). L = γ·L_forget + α·L_retain.

    Defaults: β = 10, γ = 1, α = 0 (no retain term, so no retain data is paired; with α > 0 the
    retain term is GradDiff's `retain_loss_type`). open-unlearning trains it with lr 1e-4 for 10
    epochs; here lr keeps the shared default.

    Masking [proposal]: only answer positions (label ≠ −100) are averaged. `reference_compat=True`
    reproduces open-unlearning's `compute_undial_loss` quirk instead: no mask (every position,
    prompt and padding included), and a −100 label demotes vocabulary id V − 100.
    """

    name: ClassVar[str] = "undial"
    needs_reference: ClassVar[bool] = True
    uses_retain: ClassVar[bool] = False  # with the default α = 0; an instance with α ≠ 0 pairs retain data

    class Params(GradDiff.Params):
        beta: float = Field(10.0, ge=0)
        alpha: float = 0.0
        reference_compat: bool = False

    def __init__(self, **hparams: Any):
        super().__init__(**hparams)
        self.uses_retain = self.params.alpha != 0

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        logits = model(**forget).logits
        ref_logits = ref_model(**forget).logits
        p = self.params
        return undial_loss(logits, ref_logits, forget["labels"], p.beta, p.reference_compat)
