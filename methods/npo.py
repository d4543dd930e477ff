"""NPO — Negative Preference Optimization (docs/methods.md §5.3), the original loss (not MUSE's)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from harness.methods.grad_diff import GradDiff
from harness.methods.losses import npo_loss, sequence_logprob_sum


class NPO(GradDiff):
    """Negative preference optimisation against the starting model, plus a retain term.

    L = γ·L_forget + α·L_retain, with
    L_forget = −(2/β)·mean_batch log σ(−β·[log π_θ(y_f|x) − log π_ref(y_f|x)]) and log-probs
    summed over answer tokens (`sequence_logprob_sum`). β = 0.1, γ = 1, α = 1. The reference is
    the starting model (with LoRA, the adapter-disabled view). The retain term is GradDiff's
    (`retain_loss_type`, NLL by default).
    """

    name: ClassVar[str] = "npo"
    needs_reference: ClassVar[bool] = True

    class Params(GradDiff.Params):
        beta: float = Field(0.1, gt=0, description="inverse temperature of the preference loss (smaller: closer to GA)")

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        logp = sequence_logprob_sum(model(**forget).logits, forget["labels"])
        logp_ref = sequence_logprob_sum(ref_model(**forget).logits, forget["labels"])
        return npo_loss(logp, logp_ref, self.params.beta)
