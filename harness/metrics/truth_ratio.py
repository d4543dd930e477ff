"""Truth ratio (docs/metrics.md §5.4), stored in the open-unlearning orientation R = P̃_pert / P_para."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from harness.api.metric import Metric, MetricResult, ResponseMap, answer_request
from harness.api.requests import LoglikelihoodRequest, Request
from harness.stats import bootstrap_ci

AGGREGATORS = ("closer_to_1_better", "true_better", "prob_mean")


class TruthRatio(Metric):
    """Per item, R = P̃_pert / P_para, where
      - P_para = exp(mean log p) of the paraphrased answer (of `answer` where the item has no
        paraphrase, as for real_authors / world_facts);
      - P̃_pert = exp(-mean_k avgNLL_k) = exp(mean_k mean log p_k) over the perturbed answers
        (their geometric mean of length-normalised probabilities).
    Items without perturbed answers are skipped (`details['skipped']`). `per_item` holds the
    raw R; the value aggregates them with `aggregator`:
      - closer_to_1_better: mean(min(R, 1/R))   (default on the forget split)
      - true_better:        mean(max(0, 1 - R)) (default on every other split)
      - prob_mean:          mean(P_para / (P_para + P̃_pert)) = mean(1 / (1 + R))
    """

    name = "truth_ratio"
    higher_is_better = True

    def __init__(self, benchmark, split=None, seed: int = 0, aggregator: str | None = None, **args: Any):
        from harness.errors import ConfigError

        if aggregator is not None:
            args["aggregator"] = aggregator  # keep configured args visible on `self.args`
        super().__init__(benchmark, split, seed=seed, **args)
        if aggregator is None:
            aggregator = "closer_to_1_better" if self._is_forget_split() else "true_better"
        if aggregator not in AGGREGATORS:
            raise ConfigError(
                f"truth_ratio: unknown aggregator {aggregator!r} (choose from {', '.join(AGGREGATORS)})"
            )
        self.aggregator = aggregator

    def _is_forget_split(self) -> bool:
        return self.split_role == "forget" or (
            self.split is not None and self.split == self.benchmark.forget_split()
        )

    # --- requests ---------------------------------------------------------------------
    def _request(self, item: Any, answer: str) -> LoglikelihoodRequest:
        return answer_request(self.benchmark, item, answer)

    @staticmethod
    def _correct(item: Any) -> str:
        return item.paraphrased_answer if item.paraphrased_answer.strip() else item.answer

    def requests(self) -> list[Request]:
        out: list[Request] = []
        for item in self.items:
            if not item.perturbed_answers:
                continue
            out.append(self._request(item, self._correct(item)))
            out.extend(self._request(item, p) for p in item.perturbed_answers)
        return out

    # --- values -----------------------------------------------------------------------
    def item_ratio(self, item: Any, responses: ResponseMap) -> float | None:
        """R for one item, computed in log space: log R = mean_k mean_logp_k - mean_logp_para.

        A zero-token answer has no probability: an empty correct side skips the item, an empty
        perturbed answer is left out of the mean (both counted by `empty_answers`)."""
        if not item.perturbed_answers:
            return None
        para = responses[self._request(item, self._correct(item))]
        pert = [r for r in (responses[self._request(item, p)] for p in item.perturbed_answers) if r.n_tokens > 0]
        if para.n_tokens == 0 or not pert:
            return None
        return math.exp(float(np.mean([r.mean for r in pert])) - para.mean)

    def empty_answers(self, responses: ResponseMap) -> int:
        """How many of the scored answers (correct sides and perturbed) had no token."""
        return sum(1 for r in self.requests() if responses[r].n_tokens == 0)

    def aggregate(self, ratios: Sequence[float]) -> float:
        r = np.asarray(ratios, dtype=float)
        with np.errstate(divide="ignore", over="ignore"):
            if self.aggregator == "closer_to_1_better":
                vals = np.minimum(r, 1.0 / r)
            elif self.aggregator == "true_better":
                vals = np.maximum(0.0, 1.0 - r)
            else:  # prob_mean
                vals = 1.0 / (1.0 + r)
        return float(np.mean(vals))

    def compute(self, responses, deps, reference) -> MetricResult:
        per_item: dict[str, float] = {}
        skipped = 0
        for item in self.items:
            r = self.item_ratio(item, responses)
            if r is None:
                skipped += 1
            else:
                per_item[item.id] = r
        details = {"aggregator": self.aggregator, "skipped": skipped, "empty_answers": self.empty_answers(responses)}
        if not per_item:
            return self.result(None, None, 0, details=details)
        ratios = np.fromiter(per_item.values(), dtype=float)
        value = self.aggregate(ratios)
        ci = bootstrap_ci([ratios], self.aggregate, seed=self.seed)
        return self.result(value, ci, len(per_item), per_item=per_item, details=details)
