"""Normalised probability (docs/metrics.md §5.2, open-unlearning `probability_w_options`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import logsumexp

from harness.api.metric import ItemMetric, ResponseMap, answer_request
from harness.api.requests import LoglikelihoodRequest, Request


class NormalisedProbability(ItemMetric):
    """Per item, P_true / (P_true + Σ_k P_pert,k), every P the length-normalised probability
    exp(mean token log p) of §5.1; the true side is `item.answer` (as for real_authors and
    world_facts). Computed in log space. Items without perturbed answers (where the ratio
    would be 1 by construction) are skipped (`details['skipped']`). Mean over items.

    The requests are the ones `probability` (true answer) and `truth_ratio` (perturbed
    answers) ask: the benchmark prompt, then its target of the answer.
    """

    name = "normalised_probability"
    higher_is_better = True
    measures_knowledge = True

    def _request(self, item: Any, answer: str) -> LoglikelihoodRequest:
        return answer_request(self.benchmark, item, answer)

    def item_requests(self, item: Any) -> list[Request]:
        if not item.perturbed_answers:
            return []
        return [self._request(item, a) for a in (item.answer, *item.perturbed_answers)]

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        if not item.perturbed_answers:
            return None
        true = responses[self._request(item, item.answer)]
        # A zero-token answer has no probability: an empty true answer skips the item, an empty
        # perturbed one is left out of the sum (both counted in `details['empty_answers']`).
        pert = [r.mean for r in (responses[self._request(item, p)] for p in item.perturbed_answers) if r.n_tokens > 0]
        if true.n_tokens == 0:
            return None
        return math.exp(true.mean - float(logsumexp(np.asarray([true.mean, *pert], dtype=float))))

    def compute(self, responses, deps, reference):
        result = super().compute(responses, deps, reference)
        result.details["empty_answers"] = sum(1 for r in self.requests() if responses[r].n_tokens == 0)
        return result
