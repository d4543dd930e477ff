"""TOFU probability (docs/metrics.md §5.1): P(y|x) = exp(-avgNLL) of the answer, mean over items."""

from __future__ import annotations

import math
from typing import Any

from harness.api.metric import ItemMetric, ResponseMap, answer_request
from harness.api.requests import LoglikelihoodRequest, Request


class Probability(ItemMetric):
    """Length-normalised, teacher-forced answer probability exp((1/|y|) Σ_t log p(y_t|x, y_<t)).

    One log-likelihood request per item: context = the benchmark prompt, continuation =
    the benchmark target of `item.answer`. Items whose answer has no tokens are skipped.
    """

    name = "probability"
    higher_is_better = True
    measures_knowledge = True

    def item_requests(self, item: Any) -> list[Request]:
        return [self._request(item)]

    def _request(self, item: Any) -> LoglikelihoodRequest:
        return answer_request(self.benchmark, item)

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        response = responses[self._request(item)]
        if response.n_tokens == 0:
            return None
        return math.exp(response.mean)
