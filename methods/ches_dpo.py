"""CHES-DPO: DPO (methods/dpo.py) on the pairs CHES ranks least likely to displace the chosen
response (docs/methods.md §2.5). Only the pair selection differs from DPO.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from harness.errors import ConfigError, HarnessError
from harness.methods.dpo import DPO
from harness.methods.preferences import PreferencePair

if TYPE_CHECKING:
    from harness.methods.ches import CHESScore


class CHESDPO(DPO):
    """DPO on the pairs CHES ranks least likely to displace the chosen response (docs/methods.md §2.5).

    Every pair is scored with CHES and LN-CHES on the starting model (`ches_scores.jsonl`,
    with a `kept` flag), sorted ascending by `measure`, and a window of `keep` pairs (a count,
    or a fraction of the pairs) centred at quantile `quantile` is kept; the default q = 0
    keeps the lowest. Defaults follow the CHES SORRY-Bench filtering run (LN-CHES, the lowest
    ~5%: 19 of ~380 pairs there).
    """

    name: ClassVar[str] = "ches-dpo"

    class Params(DPO.Params):
        measure: Literal["ches", "ln_ches"] = "ln_ches"
        keep: int | float = 0.05  # a count (int >= 1) or a fraction in (0, 1]
        quantile: float = Field(0.0, ge=0, le=1)
        ches_scores: bool = True

        @field_validator("keep")
        @classmethod
        def _keep(cls, v: int | float) -> int | float:
            from harness.methods.ches import window_size

            try:
                window_size(v, 1)
            except HarnessError as e:
                raise ValueError(str(e)) from None
            return v

    def __init__(self, **hparams: Any):
        super().__init__(**hparams)
        if not self.params.ches_scores:
            raise ConfigError(f"method {self.name!r} always scores its pairs with CHES (`ches_scores` must stay true)")

    def select(self, pairs: list[PreferencePair], backend: Any, eos: str | None, chat: bool,
               output_dir: Path) -> tuple[list[PreferencePair], "list[CHESScore] | None"]:
        from harness.methods.ches import filter_pairs, save_scores, score_pairs

        p = self.params
        scores = score_pairs(backend, pairs, eos, chat)
        kept = filter_pairs(pairs, scores, p.measure, p.keep, p.quantile)
        kept_ids = {k.id for k in kept}
        save_scores(output_dir, scores, kept=kept_ids)
        by_id = {s.id: s for s in scores}
        return kept, [by_id[k.id] for k in kept]
