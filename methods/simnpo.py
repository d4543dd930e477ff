"""SimNPO (docs/methods.md §5.4): reference-free, length-normalised NPO, plus a retain term."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from harness.methods.grad_diff import GradDiff
from harness.methods.losses import sequence_logprob_mean, simnpo_loss


class SimNPO(GradDiff):
    """Simple NPO: no reference model, the forget answer's NLL is length-normalised.

    L = γ·L_forget + α·L_retain, with
    L_forget = −(2/β)·mean_batch log σ(β·(NLL_sum/|y| − δ)), where NLL_sum/|y| is the mean NLL of
    the answer tokens (EOS included) of each sequence (`sequence_logprob_mean`, negated).
    Defaults (open-unlearning `simnpo.yaml`): β = 4.5, δ = 0, γ = 0.125, α = 1, retain NLL
    (`retain_loss_type`, as GradDiff). open-unlearning's `docs/repro.md` notes it needs tuning.
    """

    name: ClassVar[str] = "simnpo"

    class Params(GradDiff.Params):
        beta: float = Field(4.5, gt=0)
        delta: float = 0.0
        gamma: float = 0.125

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        nll_mean = -sequence_logprob_mean(model(**forget).logits, forget["labels"])
        return simnpo_loss(nll_mean, self.params.beta, self.params.delta)
