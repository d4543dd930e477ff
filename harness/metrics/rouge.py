"""ROUGE-L of the greedy answer: TOFU's recall (docs/metrics.md §5.3) and MUSE's F1 (§6).

One scoring function for both, `rouge_l`, over rouge-score's default tokenizer; the Porter
stemmer is a parameter because the sources disagree: open-unlearning's scorer stems (TOFU
recall), the MUSE code does not (VerbMem/KnowMem F1).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rouge_score import rouge_scorer
from rouge_score.scoring import Score

from harness.api.metric import MetricResult
from harness.metrics.generation import GreedyAnswerMetric


@lru_cache(maxsize=None)
def _scorer(use_stemmer: bool) -> rouge_scorer.RougeScorer:
    """One scorer per stemmer setting for the process."""
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


def rouge_l(reference: str, prediction: str, use_stemmer: bool = True) -> Score:
    """`RougeScorer(['rougeL'], use_stemmer).score(reference, prediction)['rougeL']`:
    precision, recall (LCS / |reference|) and fmeasure."""
    return _scorer(bool(use_stemmer)).score(target=reference, prediction=prediction)["rougeL"]


def rouge_l_recall(reference: str, prediction: str) -> float:
    return float(rouge_l(reference, prediction, use_stemmer=True).recall)


class RougeLRecall(GreedyAnswerMetric):
    """Per item: greedy generation (benchmark max_new_tokens, stop strings), cut at any stop
    string, scored with `RougeScorer(['rougeL'], use_stemmer=True).score(answer, gen)`
    `['rougeL'].recall`; mean over items."""

    name = "rouge_l_recall"
    def score(self, reference: str, generation: str) -> float:
        return rouge_l_recall(reference, generation)


class RougeLF1(GreedyAnswerMetric):
    """MUSE ROUGE-L F1 (docs/metrics.md §6): per item, the greedy answer within the benchmark's
    `generation_budget(item)` (MUSE: 128 tokens for VerbMem, 32 for KnowMem, with its stop
    strings), cut at any stop string, scored with `RougeScorer(['rougeL'],
    use_stemmer).score(gt, gen)['rougeL'].fmeasure`; mean over items.

    `use_stemmer` defaults to False, as in the MUSE code (open-unlearning's scorer stems);
    it is recorded in `details['use_stemmer']`.
    """

    def __init__(self, benchmark, split=None, seed: int = 0, use_stemmer: bool = False, **args: Any):
        args["use_stemmer"] = bool(use_stemmer)  # keep it visible on `self.args`
        super().__init__(benchmark, split, seed=seed, **args)
        self.use_stemmer = bool(use_stemmer)

    def score(self, reference: str, generation: str) -> float:
        return float(rouge_l(reference, generation, self.use_stemmer).fmeasure)

    def compute(self, responses, deps, reference) -> MetricResult:
        result = super().compute(responses, deps, reference)
        result.details["use_stemmer"] = self.use_stemmer
        return result


class VerbMemRougeF1(RougeLF1):
    """MUSE VerbMem: ROUGE-L F1 of the greedy continuation of a verbatim-text prompt."""

    name = "verbmem_rouge_f1"


class KnowMemRougeF1(RougeLF1):
    """MUSE KnowMem: ROUGE-L F1 of the greedy answer to a (few-shot) question."""

    name = "knowmem_rouge_f1"
