"""ROUGE-L recall of the greedy answer (metrics.md §5.3), as TOFU reports it (LCS / |reference|)."""

from __future__ import annotations

from rouge_score import rouge_scorer

from harness.metrics.generation import GreedyAnswerMetric

# One scorer for the process: rouge-score's default tokenizer with the Porter stemmer.
_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(reference: str, prediction: str) -> float:
    return float(_SCORER.score(target=reference, prediction=prediction)["rougeL"].recall)


class RougeLRecall(GreedyAnswerMetric):
    """Per item: greedy generation (benchmark max_new_tokens, stop strings), cut at any stop
    string, scored with `RougeScorer(['rougeL'], use_stemmer=True).score(answer, gen)`
    `['rougeL'].recall`; mean over items."""

    name = "rouge_l_recall"
    def score(self, reference: str, generation: str) -> float:
        return rouge_l_recall(reference, generation)
