"""WGA — weighted gradient ascent (docs/methods.md §5.8)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from harness.methods.grad_diff import GradDiff
from harness.methods.losses import wga_loss


class WGA(GradDiff):
    """Gradient ascent weighted toward tokens the model still predicts confidently.

    L = γ·L_forget + α·L_retain, with L_forget = −mean_t[(p_t)^β·CE_t], p_t = exp(−CE_t), the mean
    over every answer token of the batch and the weights (p_t)^β detached (open-unlearning
    `compute_wga_loss`). Defaults: β = 1, γ = α = 1, retain NLL (`retain_loss_type`, as GradDiff).
    open-unlearning trains it with lr 1e-5 for 5 epochs on real models.
    """

    name: ClassVar[str] = "wga"

    class Params(GradDiff.Params):
        beta: float = Field(1.0, ge=0)

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        return wga_loss(model(**forget).logits, forget["labels"], self.params.beta)
