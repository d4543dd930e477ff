"""Memorisation from teacher-forced greedy matches: extraction strength (docs/metrics.md §5.7) and
exact memorisation (§5.8).

Both read `token_greedy` (argmax prediction == label, per answer token) of the same
log-likelihood request as `probability` (the benchmark prompt, then its target of the
answer), so the evaluator scores each answer once for all three.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.api.metric import MetricResult, ResponseMap
from harness.metrics.probability import Probability


def extraction_strength(greedy: Sequence[bool], reference_compat: bool = False) -> float:
    """ES = 1 - k/|y|, k the smallest index whose suffix is matched entirely (k = |y| when
    even the last token mismatches, so ES = 0). With `reference_compat`, open-unlearning's
    loop quirk: k stops at |y| - 1, so ES is never below 1/|y|."""
    n = len(greedy)
    k = n
    while k > 0 and greedy[k - 1]:
        k -= 1
    if reference_compat:
        k = min(k, n - 1)
    return 1.0 - k / n


class ExtractionStrength(Probability):
    """Per item, extraction strength of the teacher-forced greedy predictions of the answer
    (`extraction_strength`); mean over items. Items whose answer has no tokens are skipped.
    `reference_compat=True` reproduces open-unlearning's minimum of 1/|y| (recorded in
    `details['reference_compat']`)."""

    name = "extraction_strength"

    def __init__(self, benchmark, split=None, seed: int = 0, reference_compat: bool = False, **args: Any):
        args["reference_compat"] = bool(reference_compat)
        super().__init__(benchmark, split, seed=seed, **args)
        self.reference_compat = bool(reference_compat)

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        response = responses[self._request(item)]
        if response.n_tokens == 0:
            return None
        return extraction_strength(response.token_greedy, self.reference_compat)

    def compute(self, responses, deps, reference) -> MetricResult:
        result = super().compute(responses, deps, reference)
        result.details["reference_compat"] = self.reference_compat
        return result


class ExactMemorisation(Probability):
    """Per item, the fraction of answer tokens whose teacher-forced argmax prediction equals
    the label (mean of `token_greedy`); mean over items. Empty answers are skipped."""

    name = "exact_memorisation"

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        response = responses[self._request(item)]
        if response.n_tokens == 0:
            return None
        return float(np.mean(np.asarray(response.token_greedy, dtype=float)))
