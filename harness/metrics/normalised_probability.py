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
        true = responses[self._request(item, item.answer)].mean
        pert = [responses[self._request(item, p)].mean for p in item.perturbed_answers]
        return math.exp(true - float(logsumexp(np.asarray([true, *pert], dtype=float))))
