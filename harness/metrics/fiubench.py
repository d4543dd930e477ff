"""FIUBench's metrics as registered metrics (benchmarks.md §3; metrics.md §5, §7): which
requests each asks, and how its per-item values aggregate. The numbers themselves are the pure
functions of `harness.metrics.fiubench_formulas`, checked there against FIUBench's code.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.api.judge import JudgeRequest
from harness.api.metric import ItemMetric, Metric, MetricResult, ResponseMap, answer_request
from harness.api.requests import GenerateRequest, Request
from harness.metrics.fiubench_formulas import (GPT_MIN_CHARS, cut_generation, gpt_eval_score, keyword_match,
                                              min_k_plus_plus_z, paper_avg_fq, rouge_l_recall, to_open_unlearning_ratio,
                                              truth_ratio_forget, truth_ratio_retain, weighted_min_k,
                                              weighted_min_k_plus_plus, yes_no)
from harness.metrics.generation import GreedyAnswerMetric, generated_text, greedy_request
from harness.metrics.truth_ratio import TruthRatio

# --- registered metrics ------------------------------------------------------------------
# Where FIUBench's definition differs from TOFU's the metric has its own `fiu_` name; where it
# is the same (Prob. = `probability`, the code's retain Prob. = `normalised_probability`, the
# KS test = `forget_quality`, the code's Model Utility = `model_utility` over the benchmark's
# `utility_metrics`) the TOFU metric is reused.
GPT_ROLE = "fiu_gpt"  # the judge role GPT-Eval asks (config `judges: {fiu_gpt: {...}}`)
GPT_TEMPLATE = Path(__file__).parent.parent / "judges" / "templates" / "fiubench_gpt_eval.txt"
KS_LOG_SPAN = 26.1  # norm(KS) = 1 + log10(p) / 26.1, clipped to [0, 1]: the fit of the paper's Table 2


def _cut_answer(benchmark: Any, item: Any, responses: ResponseMap) -> str:
    """The item's greedy generation as FIUBench reads it for EM and GPT-Eval (`cut_generation`)."""
    request = greedy_request(benchmark, item)
    return cut_generation(generated_text(responses[request], request.stop))


class FIURougeLRecall(GreedyAnswerMetric):
    """FIUBench ROUGE-L: rouge-score recall with the stemmer, of the text before the generation's
    first period (TOFU's `rouge_l_recall` scores the whole generation)."""

    name = "fiu_rouge_l_recall"

    def score(self, reference: str, generation: str) -> float:
        return rouge_l_recall(reference, generation, cut=True)


class FIUKeywordEM(ItemMetric):
    """FIUBench EM: the share of the QA's keywords in its cut greedy generation (TOFU's
    `exact_match_recall` looks for the whole answer)."""

    name = "fiu_keyword_em"
    higher_is_better = True
    measures_knowledge = True

    def item_requests(self, item: Any) -> list[Request]:
        return [greedy_request(self.benchmark, item)] if item.keywords else []

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        return keyword_match(_cut_answer(self.benchmark, item, responses), item.keywords) if item.keywords else None


class FIUAPE(ItemMetric):
    """APE: keyword EM of the greedy answers to the QA's paraphrased questions (same picture),
    averaged per item over its paraphrases, then over items."""

    name = "fiu_ape"
    higher_is_better = True
    measures_knowledge = True

    def _requests(self, item: Any) -> list[GenerateRequest]:
        return [greedy_request(self.benchmark, dataclasses.replace(item, question=q)) for q in item.question_paraphrases]

    def item_requests(self, item: Any) -> list[Request]:
        return list(self._requests(item)) if item.keywords else []

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        requests = self._requests(item)
        if not requests or not item.keywords:
            return None
        return float(np.mean([keyword_match(cut_generation(generated_text(responses[r], r.stop)), item.keywords)
                              for r in requests]))


class FIUTruthRatio(TruthRatio):
    """FIUBench's truth ratio: per item R = P_para / P̃_pert (the inverse of `truth_ratio`'s),
    forget mean(min(R, 1/R)), elsewhere mean(max(0, 1 − 1/R)); the aggregates equal TOFU's,
    the per-item values (and so sample records) are FIUBench's."""

    name = "fiu_truth_ratio"

    def item_ratio(self, item: Any, responses: ResponseMap) -> float | None:
        r = super().item_ratio(item, responses)
        return None if r is None else float(to_open_unlearning_ratio(r))

    def aggregate(self, ratios: Sequence[float]) -> float:
        if self.aggregator == "closer_to_1_better":
            return truth_ratio_forget(ratios)
        if self.aggregator == "true_better":
            return truth_ratio_retain(ratios)
        return super().aggregate(to_open_unlearning_ratio(np.asarray(ratios, dtype=float)))


class FIUMinK(ItemMetric):
    """FIUBench's MIA column: weighted Min-K% Prob of the answer (tokens from the second on),
    mean over the split; probability-like, higher = more member-like (not an AUC)."""

    name = "fiu_mia_min_k"
    higher_is_better = True
    measures_knowledge = True

    def item_requests(self, item: Any) -> list[Request]:
        return [answer_request(self.benchmark, item)]

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        lp = responses[answer_request(self.benchmark, item)].token_logprobs[1:]
        return weighted_min_k(lp) if lp else None


class FIUMinKPlusPlus(FIUMinK):
    """FIUBench's weighted Min-K%++ (z = (log p − μ) / σ per token), mean over the split."""

    name = "fiu_mia_min_k_plus_plus"

    def item_requests(self, item: Any) -> list[Request]:
        return [answer_request(self.benchmark, item, moments=True)]

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        r = responses[answer_request(self.benchmark, item, moments=True)]
        if len(r.token_logprobs) < 2:
            return None
        z = min_k_plus_plus_z(r.token_logprobs[1:], r.token_mu[1:], np.square(r.token_sigma[1:]))
        return weighted_min_k_plus_plus(z)


class FIUAccuracy(GreedyAnswerMetric):
    """ACC: the share of yes/no visual questions answered right (first word Yes / No)."""

    name = "fiu_acc"
    measures_knowledge = False

    def score(self, reference: str, generation: str) -> float:
        return float(yes_no(generation) == yes_no(reference))


class FIUGPTEval(ItemMetric):
    """GPT-Eval: a judge (role `fiu_gpt`, template `harness/judges/templates/fiubench_gpt_eval.txt`) scores the
    factual agreement of the cut greedy answer with the reference, 0-1; answers of 5 characters
    or fewer score 0 unasked. Needs a judge model: without one the run says so (it is never faked).
    Any model judge kind serves (e.g. `rubric` with `max_new_tokens: 64`): the score is read from
    its raw reply's first line (`score: 0.8`)."""

    name = "fiu_gpt_eval"
    higher_is_better = True
    measures_knowledge = True

    def item_requests(self, item: Any) -> list[Request]:
        return [greedy_request(self.benchmark, item)]

    def _judge(self, item: Any, responses: ResponseMap) -> JudgeRequest | None:
        answer = _cut_answer(self.benchmark, item, responses)
        if len(answer) < GPT_MIN_CHARS:
            return None
        template = self.args.get("template") or GPT_TEMPLATE.read_text()
        return JudgeRequest(GPT_ROLE, item.question, answer, template=template.replace("{reference}", item.answer))

    def judge_requests(self, responses: ResponseMap) -> list[Any]:
        return [jr for item in self.items if (jr := self._judge(item, responses)) is not None]

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        jr = self._judge(item, responses)
        if jr is None:
            return 0.0
        # An unparseable reply is left out (counted in details['skipped']), not scored 0 as the code does.
        return gpt_eval_score(responses[jr].raw, jr.response, unparseable=None)


class FIUAvgMU(Metric):
    """The paper's Avg. MU (Table 2): mean of retain ROUGE-L, GPT-Eval, truth ratio and ACC.
    None unless every part is there: GPT-Eval needs a judge (benchmark option `gpt_eval: true`
    and a `fiu_gpt` judge), ACC the benchmark's `acc_metric`. The code's harmonic-mean Model
    Utility is `model_utility`."""

    name = "fiu_avg_mu"
    higher_is_better = True
    needs_split = False
    PARTS = ("fiu_rouge_l_recall@retain", "fiu_gpt_eval@retain", "fiu_truth_ratio@retain")

    def _acc(self) -> str | None:
        return getattr(self.benchmark, "acc_metric", None)

    def dependencies(self) -> list[str]:
        gpt = self.benchmark.options.get("gpt_eval", False)
        parts = [p for p in self.PARTS if gpt or not p.startswith("fiu_gpt_eval")]
        return parts + ([self._acc()] if self._acc() else [])

    def compute(self, responses, deps, reference) -> MetricResult:
        parts = {d: deps[d].value for d in self.dependencies()}
        missing = [d for d in (*self.PARTS, self._acc() or "ACC") if parts.get(d) is None]
        if missing:
            why = {"fiu_gpt_eval@retain": "GPT-Eval needs a judge model (option gpt_eval: true, judges: {fiu_gpt: ...})",
                   "ACC": f"benchmark {self.benchmark.name!r} has no ACC questions"}
            return self.result(None, None, 0, details={"parts": parts, "reason": "; ".join(why.get(m, f"no value for {m}")
                                                                                           for m in missing)})
        n = deps["fiu_rouge_l_recall@retain"].n
        return self.result(float(np.mean(list(parts.values()))), None, n, details={"parts": parts})


class FIUAvgFQ(Metric):
    """The paper's Avg. FQ: 0.5·norm(KS) + 0.15·(1 − EM) + 0.2·(1 − MIA) + 0.15·(1 − APE) on the
    forget split, norm(KS) = 1 + log10(p)/26.1 clipped to [0, 1] (the fit of Table 2; the paper
    min-max normalises over its runs). None without a reference run (no KS p-value)."""

    name = "fiu_avg_fq"
    higher_is_better = True
    needs_split = False
    PARTS = ("forget_quality", "fiu_keyword_em@forget", "fiu_mia_min_k@forget", "fiu_ape@forget")

    def dependencies(self) -> list[str]:
        return list(self.PARTS)

    def compute(self, responses, deps, reference) -> MetricResult:
        parts = {d: deps[d].value for d in self.PARTS}
        missing = [d for d, v in parts.items() if v is None]
        if missing:
            return self.result(None, None, 0, details={"parts": parts, "reason": f"no value for {', '.join(missing)}"})
        p, em, mia, ape_value = (float(parts[d]) for d in self.PARTS)
        norm_ks = min(1.0, max(0.0, 1.0 + math.log10(p) / KS_LOG_SPAN)) if p > 0 else 0.0
        value = paper_avg_fq(norm_ks, em, mia, ape_value)
        return self.result(value, None, deps["fiu_keyword_em@forget"].n, details={"parts": parts, "norm_ks": norm_ks})
