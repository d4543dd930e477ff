"""GradAscent (docs/methods.md §5.1): maximise the NLL of forget answers; no retain term."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from harness.api.method import UnlearningMethod
from harness.api.training import answer_nll_mean


class GradAscent(UnlearningMethod):
    """Gradient ascent on the forget set: L = −γ·NLL_mean(forget) (γ = 1; `alpha` is unused).

    The loss is unbounded below, so long runs wreck the model: always report utility too.
    """

    name: ClassVar[str] = "grad-ascent"
    uses_retain: ClassVar[bool] = False

    def loss(self, model: Any, forget: dict, retain: dict | None, ref_model: Any) -> torch.Tensor:
        return -self.params.gamma * answer_nll_mean(model, forget)
