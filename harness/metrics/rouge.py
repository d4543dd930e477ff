"""ROUGE-L recall of the greedy answer (metrics.md §5.3), as TOFU reports it (LCS / |reference|)."""

from __future__ import annotations

from typing import Any

from rouge_score import rouge_scorer

from harness.metrics.base import ItemMetric, ResponseMap
from harness.metrics.generation import generated_text, greedy_request
from harness.requests import Request

# One scorer for the process: rouge-score's default tokenizer with the Porter stemmer.
_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(reference: str, prediction: str) -> float:
    return float(_SCORER.score(target=reference, prediction=prediction)["rougeL"].recall)


class RougeLRecall(ItemMetric):
    """Per item: greedy generation (benchmark max_new_tokens, stop strings), cut at any stop
    string, scored with `RougeScorer(['rougeL'], use_stemmer=True).score(answer, gen)`
    `['rougeL'].recall`; mean over items."""

    name = "rouge_l_recall"
    higher_is_better = True
    measures_knowledge = True

    def item_requests(self, item: Any) -> list[Request]:
        return [greedy_request(self.benchmark, item)]

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        gen = generated_text(responses[greedy_request(self.benchmark, item)], self.benchmark.stop)
        return rouge_l_recall(item.answer, gen)
