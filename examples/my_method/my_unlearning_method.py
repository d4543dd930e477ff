"""A complete unlearning method in one file: gradient ascent with a capped, scaled forget loss.

Install it (`pip install -e examples/my_method`) and name it in a config:
    methods: [{name: scaled-ascent, params: {scale: 0.5, max_steps: 20}}]
"""

from typing import ClassVar

import torch
from pydantic import Field

from harness.api.method import UnlearningMethod
from harness.api.training import answer_nll_mean


class ScaledAscent(UnlearningMethod):
    """Gradient ascent on the forget set, scaled, and stopped once the NLL passes a cap."""

    name: ClassVar[str] = "scaled-ascent"
    uses_retain: ClassVar[bool] = False  # batches carry forget examples only

    class Params(UnlearningMethod.Params):  # the shared ones (lr, epochs, peft, ...) plus ours
        scale: float = Field(0.5, gt=0)
        nll_cap: float = 20.0

    def loss(self, model, forget: dict, retain, ref_model) -> torch.Tensor:
        nll = answer_nll_mean(model, forget)
        return -self.params.scale * torch.clamp(nll, max=self.params.nll_cap)
