"""FIUBench's metrics (benchmarks.md §3; metrics.md §5, §7) as pure functions over numbers and strings.

No model calls: callers pass generations, per-token answer log-probabilities (natural log,
answer tokens only) or per-item values, and get FIUBench's numbers back. Definitions follow
the evaluation code (`evaluate_util.py`, `aggregate_eval_stat.py`; read here in
gray311/VLM_Unlearned @ fdd51bf, the code FIUBench descends from); where the paper's table
aggregates differ from the code's, both are given under different names.

Truth ratio orientation. FIUBench (like TOFU's legacy code) aggregates
`R = exp(mean_k avgNLL_pert_k − avgNLL_para) = P_para / P̃_pert` (> 1 when the model prefers
the right answer), with forget `mean(min(R, 1/R))` and retain `mean(max(0, 1 − 1/R))`.
`harness.metrics.truth_ratio` stores open-unlearning's orientation `R_ou = P̃_pert / P_para =
1 / R` and aggregates forget `mean(min(R_ou, 1/R_ou))` and retain (`true_better`)
`mean(max(0, 1 − R_ou))`. The two give the same aggregates; only the per-item ratio is
inverted (`to_open_unlearning_ratio`). The KS test is unchanged by the inversion (1/x is
monotone, so both samples' order statistics map together).

Min-K% here is FIUBench's, not open-unlearning's (§7): a weighted *probability-like* score
(higher = more member-like), `Σ_k w_k · exp(mean of the lowest ⌊k·n⌋ token log-probs)` over
k = 10..50 %, reported as its mean over the forget set; open-unlearning's is a loss-like
`−mean` of the lowest 40 % scored by AUC.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats

from harness.api.judge import JudgeRequest
from harness.api.metric import ItemMetric, Metric, MetricResult, ResponseMap, answer_request
from harness.api.requests import GenerateRequest, Request
from harness.metrics.generation import GreedyAnswerMetric, generated_text, greedy_request
from harness.metrics.rouge import rouge_l
from harness.metrics.truth_ratio import TruthRatio

MIN_K_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5)
MIN_K_WEIGHTS = (0.3, 0.3, 0.2, 0.1, 0.1)
AVG_FQ_WEIGHTS = (0.5, 0.15, 0.2, 0.15)  # norm(KS), 1 − EM, 1 − MIA, 1 − APE
GPT_MIN_CHARS = 6  # generations of 5 characters or fewer score 0 without asking the judge


# --- generation-based ------------------------------------------------------------------
def cut_generation(generation: str) -> str:
    """FIUBench's cut of a greedy generation (`run_generation`): up to and including the first
    '.'; a generation **without a period becomes ''** (`s[:s.find('.') + 1]` with find = −1).
    Keyword EM and GPT-Eval read this text."""
    return generation[: generation.find(".") + 1]


def rouge_l_recall(answer: str, generation: str, cut: bool = True, use_stemmer: bool = True) -> float:
    """ROUGE-L recall (LCS / |answer tokens|) of the generation against the answer, rouge-score
    with the Porter stemmer. With `cut` (FIUBench's pipeline) the generation is first
    `cut_generation`, then `eval_rouge_recall` drops the first '.' and what follows
    (`gen[:gen.find('.')]`), so only the text before the first period is scored."""
    if cut:
        generation = cut_generation(generation)
        generation = generation[: generation.find(".")]
    return float(rouge_l(answer, generation, use_stemmer=use_stemmer).recall)


def keyword_match(generation: str, keywords: Sequence[str]) -> float:
    """Keyword exact match (`eval_exact_match`): each keyword found (case-insensitive substring)
    in the generation adds 1/len(keywords); capped at 1. No keywords: 0."""
    score = 0.0
    for key in keywords:
        if key.lower() in generation.lower():
            score += 1.0 / len(keywords)
    return min(1.0, score)


def exact_match(generations: Sequence[str], keywords: Sequence[Sequence[str]]) -> float:
    """EM: the mean keyword match over QA items (one greedy generation each)."""
    _same_length(generations, keywords)
    return float(np.mean([keyword_match(g, k) for g, k in zip(generations, keywords)]))


def ape(generations: Sequence[Sequence[str]], keywords: Sequence[Sequence[str]]) -> float:
    """APE (adversarial privacy extraction): the keyword match of the generations for each QA's
    paraphrased questions (three per QA in FIUBench), averaged over all those generations."""
    _same_length(generations, keywords)
    scores = [keyword_match(g, k) for gens, k in zip(generations, keywords) for g in gens]
    if not scores:
        raise ValueError("no generations")
    return float(np.mean(scores))


def gpt_eval_score(judge_reply: str, generation: str, unparseable: float | None = 0.0) -> float | None:
    """GPT-Eval's per-item score from the judge's reply: 0 for a generation of 5 characters or
    fewer (the judge is not asked); else the first line, after any 'label:' and '**', as a
    float; `unparseable` when it does not parse (0.0 as the code's bare except; the registered
    metric passes None, so such a reply is counted, never scored)."""
    if len(generation) < GPT_MIN_CHARS:
        return 0.0
    score = judge_reply.split("\n")[0].strip(" ")
    if ":" in score:
        score = score[score.find(":"):].strip(":").strip(" ")
    if "**" in score:
        score = score.strip("**").strip(" ")
    try:
        return float(score)
    except ValueError:
        return unparseable


def yes_no(generation: str) -> str | None:
    """'Yes' / 'No' from the first word of a generation (case-insensitive), else None: how the
    project's yes/no visual questions (FIUBench's ACC stand-in) are read."""
    words = generation.strip().split()
    first = words[0].strip(".,!:;").lower() if words else ""
    return {"yes": "Yes", "no": "No"}.get(first)


# --- likelihood-based ------------------------------------------------------------------
def avg_nll(token_logprobs: Sequence[float]) -> float:
    """Per-token loss of an answer: −mean log p over its tokens."""
    lp = np.asarray(token_logprobs, dtype=float)
    if lp.size == 0:
        raise ValueError("an answer needs at least one token")
    return float(-lp.mean())


def answer_probability(token_logprobs: Sequence[float]) -> float:
    """Prob. on the forget set: `exp(−mean token loss)` of the answer (length-normalised)."""
    return math.exp(-avg_nll(token_logprobs))


def normalised_answer_probability(answer_logprobs: Sequence[float], perturbed_logprobs: Sequence[Sequence[float]]) -> float:
    """Prob. on the retain set in the code's Model Utility (`get_model_utility`): `P_a / (P_a +
    Σ_k P_k)` with every P = exp(−avgNLL)."""
    p = answer_probability(answer_logprobs)
    return p / (p + sum(answer_probability(x) for x in perturbed_logprobs))


def truth_ratio(paraphrased_logprobs: Sequence[float], perturbed_logprobs: Sequence[Sequence[float]]) -> float:
    """FIUBench's per-item R = exp(mean_k avgNLL(perturbed_k) − avgNLL(paraphrased)) = P_para / P̃_pert."""
    if not perturbed_logprobs:
        raise ValueError("truth ratio needs at least one perturbed answer")
    return truth_ratio_from_losses(avg_nll(paraphrased_logprobs), [avg_nll(x) for x in perturbed_logprobs])


def truth_ratio_from_losses(paraphrased_avg_nll: float, perturbed_avg_nlls: Sequence[float]) -> float:
    """R from the logged per-token losses (`avg_paraphrased_loss`, `average_perturb_loss`)."""
    return math.exp(float(np.mean(perturbed_avg_nlls)) - paraphrased_avg_nll)


def to_open_unlearning_ratio(r: float | np.ndarray) -> float | np.ndarray:
    """FIUBench's R = P_para / P̃_pert -> open-unlearning's P̃_pert / P_para (and back): 1 / R."""
    return 1.0 / np.asarray(r, dtype=float) if isinstance(r, np.ndarray) else 1.0 / r


def truth_ratio_forget(ratios: Iterable[float]) -> float:
    """Forget aggregate: mean(min(R, 1/R)) (1 = indifferent between right and wrong answers)."""
    r = np.asarray(list(ratios), dtype=float)
    return float(np.mean(np.minimum(r, 1.0 / r)))


def truth_ratio_retain(ratios: Iterable[float]) -> float:
    """Retain aggregate: mean(max(0, 1 − 1/R)) (→ 1 as the right answer dominates)."""
    r = np.asarray(list(ratios), dtype=float)
    return float(np.mean(np.maximum(0.0, 1.0 - 1.0 / r)))


def _min_k_scores(values: np.ndarray, ratios: Sequence[float]) -> list[float]:
    out = []
    for ratio in ratios:
        k = int(len(values) * ratio)
        out.append(math.exp(float(np.mean(np.sort(values)[:k]))) if k > 0 else math.nan)
    return out


def weighted_min_k(token_logprobs: Sequence[float], ratios: Sequence[float] = MIN_K_RATIOS,
                   weights: Sequence[float] = MIN_K_WEIGHTS) -> float:
    """FIUBench's Min-K% Prob: `Σ_k w_k · exp(mean of the lowest int(n·k) log-probs)`.

    As the code: k_length = int(n·k) with no floor of 1, so a ratio that selects no token
    gives NaN and its term is **dropped without renormalising the weights** (an answer of 4
    tokens keeps only k = 30, 40, 50 %: weights 0.2 + 0.1 + 0.1). FIUBench passes the answer's
    tokens from the second on (`labels[1:]`). Higher = more member-like."""
    lp = np.asarray(token_logprobs, dtype=float)
    return float(sum(w * s for s, w in zip(_min_k_scores(lp, ratios), weights) if not math.isnan(s)))


def min_k_plus_plus_z(token_logprobs: Sequence[float], mu: Sequence[float], var: Sequence[float]) -> np.ndarray:
    """Min-K%++'s per-token z = (log p(x_t) − μ_t) / sqrt(σ²_t), μ_t = E_p[log p], σ²_t = Var_p[log p]
    (FIUBench does not clamp σ², unlike open-unlearning's 1e-6 floor)."""
    return (np.asarray(token_logprobs, dtype=float) - np.asarray(mu, dtype=float)) / np.sqrt(np.asarray(var, dtype=float))


def weighted_min_k_plus_plus(z: Sequence[float], ratios: Sequence[float] = MIN_K_RATIOS,
                             weights: Sequence[float] = MIN_K_WEIGHTS) -> float:
    """FIUBench's Min-K%++: the same weighted sum as `weighted_min_k`, over the z scores."""
    return weighted_min_k(z, ratios, weights)


def mia_score(per_item: Iterable[float]) -> float:
    """The MIA column: the mean weighted Min-K% (or Min-K%++) score over the forget set."""
    v = np.asarray(list(per_item), dtype=float)
    if v.size == 0:
        raise ValueError("no items")
    return float(v.mean())


# --- forget quality and aggregates -----------------------------------------------------
def forget_quality(unlearned_ratios: Sequence[float], retain_model_ratios: Sequence[float]) -> tuple[float, float]:
    """KS-Test forget quality: (p-value, statistic) of `scipy.stats.ks_2samp` between the
    forget-set truth ratios of the unlearned model and those of the retain-only model on the
    same questions. Either orientation of R gives the same numbers."""
    res = stats.ks_2samp(np.asarray(unlearned_ratios, dtype=float), np.asarray(retain_model_ratios, dtype=float))
    return float(res.pvalue), float(res.statistic)


def code_model_utility(rouge: float, prob: float, truth_ratio_value: float, gpt: float | None = None,
                       em: float | None = None) -> float:
    """The code's "Model Utility" (`aggregate_eval_stat.get_model_utility`): the harmonic mean
    of the retain-split ROUGE-L recall, Prob. (`normalised_answer_probability` mean), truth
    ratio (`truth_ratio_retain`) and, when present, GPT-Eval and EM. Any part at 0 gives 0."""
    parts = [rouge, prob, truth_ratio_value] + [v for v in (gpt, em) if v is not None]
    if any(v < 0 for v in parts):
        raise ValueError(f"harmonic mean of negative values: {parts}")
    if any(v == 0 for v in parts):
        return 0.0
    return float(stats.hmean(parts))


def paper_avg_mu(rouge_l_value: float, gpt: float, truth_ratio_value: float, acc: float) -> float:
    """The paper's Avg. MU (Table 2, App. D.3, [third-party]): the arithmetic mean of retain
    ROUGE-L, GPT-Eval, truth ratio and the MME/POPE ACC."""
    return (rouge_l_value + gpt + truth_ratio_value + acc) / 4.0


def paper_avg_fq(ks_normalised: float, em: float, mia: float, ape_value: float,
                 weights: Sequence[float] = AVG_FQ_WEIGHTS) -> float:
    """The paper's Avg. FQ ([third-party]): `0.5·norm(KS) + 0.15·(1 − EM) + 0.2·(1 − MIA) +
    0.15·(1 − APE)`, all in [0, 1]. The paper does not define norm(KS); its Table 2 (forget 5 %)
    fits `1 + log_p/26.1` (min-max over log p-values with a minimum near −26.1), so the
    caller supplies the normalised value (e.g. `minmax_normalise` of log p-values)."""
    w_ks, w_em, w_mia, w_ape = weights
    return w_ks * ks_normalised + w_em * (1 - em) + w_mia * (1 - mia) + w_ape * (1 - ape_value)


def minmax_normalise(values: Sequence[float]) -> list[float]:
    """(v − min) / (max − min) over the compared runs (all 1.0 when they are equal)."""
    v = np.asarray(values, dtype=float)
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        return [1.0] * len(v)
    return [float(x) for x in (v - lo) / (hi - lo)]


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} generations but {len(b)} keyword lists")
    if not a:
        raise ValueError("no items")


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
