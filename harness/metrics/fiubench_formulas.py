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

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

from harness.metrics.rouge import rouge_l

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
