"""PO (FIUBench's `idk` forget loss): fine-tune the forget questions towards a refusal.

FIUBench (benchmarks.md §3) calls it preference optimisation, but its loss is plain NLL: the
forget question answered by a refusal ("I cannot answer questions about the person in this
image"), plus NLL on the retain set. The refusals are IdkDPO's (drawn once per item from
`methods.idk_answers`, or one per line from `idk_path`, e.g. FIUBench's own `prompt.json`
`idk` list written out), so PO and IdkDPO train on the same targets and differ only in the loss.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from harness.api.training import answer_nll_mean, model_inputs
from harness.methods.grad_diff import GradDiff
from harness.methods.idk_dpo import IdkDPO


class PO(IdkDPO):
    """L = γ·NLL(refusal | forget question) + α·L_retain (retain NLL by default)."""

    name: ClassVar[str] = "po"
    needs_reference: ClassVar[bool] = False

    class Params(GradDiff.Params):
        idk_path: str | None = None  # a file of refusals, one per line; None: methods.idk_answers

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        return answer_nll_mean(model, model_inputs(forget["alternate"]))
