"""GradDiff (docs/methods.md §5.2): gradient ascent on forget plus descent on retain."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from harness.api.method import UnlearningMethod
from harness.api.training import answer_nll_mean
from harness.methods.losses import retain_loss


class GradDiff(UnlearningMethod):
    """L = γ·(−NLL_mean(forget)) + α·L_retain, with L_retain = retain NLL (default) or KL(π_ref ‖ π_θ)."""

    name: ClassVar[str] = "grad-diff"

    class Params(UnlearningMethod.Params):
        retain_loss_type: Literal["NLL", "KL"] = Field(
            "NLL", description="retain term: NLL of retain answers, or KL to the starting model")

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        return -answer_nll_mean(model, forget)

    def loss(self, model: Any, forget: dict, retain: dict | None, ref_model: Any) -> torch.Tensor:
        p = self.params
        total = p.gamma * self.forget_loss(model, forget, ref_model)
        if retain is not None and p.alpha != 0:
            total = total + p.alpha * retain_loss(model, retain, ref_model, p.retain_loss_type)
        return total


class KL(GradDiff):
    """FIUBench's KL: gradient ascent on forget + KL(π_ref ‖ π_θ) on retain, i.e. grad-diff with
    `retain_loss_type: KL` under its own name, so a grid can hold both."""

    name: ClassVar[str] = "kl"

    class Params(GradDiff.Params):
        retain_loss_type: Literal["NLL", "KL"] = "KL"
