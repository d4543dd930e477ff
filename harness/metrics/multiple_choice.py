"""Multiple-choice accuracy (WMDP, MMLU), as lm-evaluation-harness's `acc`."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.api.metric import ItemMetric, MetricResult, ResponseMap
from harness.api.requests import LoglikelihoodRequest, Request

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class MCQAccuracy(ItemMetric):
    """Per item (an `MCQItem`): one log-likelihood request per choice, context = the benchmark
    prompt, continuation = the benchmark's choice continuation (" A", " B", ...: the benchmark's
    `choice_continuations(item)`, else `target(letter)`). The prediction is the choice with the
    highest *summed* log-probability (the first on ties); the value is 1 when it is
    `item.answer`, else 0. The mean over items, with a bootstrap CI; `details['chance']` is the
    mean of 1/#choices.

    On a forget split (`benchmark.is_forget_split`, e.g. every WMDP subset) lower is better:
    unlearning hazardous knowledge aims at chance accuracy.
    """

    name = "mcq_accuracy"
    higher_is_better = True
    measures_knowledge = True

    def _requests(self, item: Any) -> list[LoglikelihoodRequest]:
        continuations = getattr(self.benchmark, "choice_continuations", None)
        if continuations is not None:
            conts = continuations(item)
        else:
            conts = [self.benchmark.target(letter) for letter in LETTERS[: len(item.choices)]]
        context = self.benchmark.prompt(item)
        return [LoglikelihoodRequest(context=context, continuation=c, images=self.benchmark.images(item)) for c in conts]

    def item_requests(self, item: Any) -> list[Request]:
        return list(self._requests(item))

    def predicted(self, item: Any, responses: ResponseMap) -> int:
        """Index of the choice with the highest summed log-likelihood (the first on ties)."""
        return int(np.argmax([responses[r].sum for r in self._requests(item)]))

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        return 1.0 if self.predicted(item, responses) == item.answer else 0.0

    def compute(self, responses, deps, reference) -> MetricResult:
        result = super().compute(responses, deps, reference)
        if self.items:
            result.details["chance"] = float(np.mean([1.0 / len(it.choices) for it in self.items]))
        return result

    @property
    def better_when_higher(self) -> bool | None:
        is_forget = getattr(self.benchmark, "is_forget_split", None)
        if self.split is not None and is_forget is not None and is_forget(self.split):
            return not self.higher_is_better
        return super().better_when_higher
