"""The one greedy generation request per item, and reading its text back.

ROUGE-L recall and exact-match recall ask for the *same* request (built here), so the
evaluator generates once per item and both metrics score that one completion.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Iterable

from harness.api.metric import ItemMetric, ResponseMap
from harness.api.requests import GenerateRequest, GenerateResponse, Request

if TYPE_CHECKING:
    from harness.api.benchmark import Benchmark, QAItem


def greedy_request(benchmark: "Benchmark", item: "QAItem") -> GenerateRequest:
    """Greedy decoding (temperature 0) of the benchmark's prompt, with its token budget and stops."""
    max_new_tokens, stop = benchmark.generation_budget(item)
    return GenerateRequest(prompt=benchmark.prompt(item), max_new_tokens=max_new_tokens, stop=stop,
                           images=benchmark.images(item))


def cut_at_stop(text: str, stop: Iterable[str]) -> str:
    """`text` up to the earliest occurrence of any (non-empty) stop string."""
    end = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                end = min(end, i)
    return text[:end]


def generated_text(response: GenerateResponse, stop: Iterable[str]) -> str:
    """The first completion, cut at any stop string and stripped of surrounding whitespace."""
    text = response.texts[0] if response.texts else ""
    return cut_at_stop(text, stop).strip()


class GreedyAnswerMetric(ItemMetric):
    """A per-item score of the greedy answer against the reference (ROUGE, exact match, ...).

    Subclasses implement only `score(reference, generation)`.
    """

    higher_is_better = True
    measures_knowledge = True

    def item_requests(self, item: "QAItem") -> list[Request]:
        return [greedy_request(self.benchmark, item)]

    def item_value(self, item: "QAItem", responses: ResponseMap) -> float | None:
        request = greedy_request(self.benchmark, item)
        gen = generated_text(responses[request], request.stop)
        return self.score(item.answer, gen)

    @abstractmethod
    def score(self, reference: str, generation: str) -> float | None:
        """The item's score of `generation` against `reference` (None: left out)."""
