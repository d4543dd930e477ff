"""Likelihood displacement: how a preference method moved log p(chosen) and log p(rejected) (docs/metrics.md §15).

During DPO the log-probability of the *preferred* response can fall (Razin et al., ICLR 2025);
CHES predicts on which pairs. A preference method measures, on its training pairs, the summed
log-probability over response tokens (EOS included; docs/metrics.md §0.1) before and after training,
through the backend's LoglikelihoodRequests on the same prompt encoding as training and CHES:

    Δ+ = log π_after(y+|x) - log π_before(y+|x),   Δ- likewise for y-

and reports, each with a 95% bootstrap CI over pairs (harness/stats.py):

    likelihood_displacement:delta_chosen             mean Δ+ (summed log-probs)
    likelihood_displacement:delta_rejected           mean Δ-
    likelihood_displacement:rate                     share of pairs with Δ+ < 0
    likelihood_displacement:margin_change            mean (Δ+ - Δ-)
    likelihood_displacement:delta_chosen_per_token   mean change of the per-token mean log-prob of y+
    likelihood_displacement:delta_rejected_per_token ... of y-
    likelihood_displacement:spearman_ches            Spearman ρ(pre-training CHES, Δ+), when scores exist
    likelihood_displacement:spearman_ln_ches         Spearman ρ(LN-CHES, Δ+)

These are not evaluation metrics (they need the model before and after training): the method
computes them and stores them in its artefact (`ModelArtifact.metrics`); the runner adds them
to the cell's results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from harness.api.metric import MetricResult
from harness.stats import CONFIDENCE, N_RESAMPLES, mean_ci

if TYPE_CHECKING:
    from harness.methods.ches import CHESScore
    from harness.methods.preferences import PreferencePair

PREFIX = "likelihood_displacement"
HOLDOUT_PREFIX = "likelihood_displacement_holdout"


@dataclass(frozen=True)
class PairLogprobs:
    """Summed and per-token mean log-probabilities of a pair's two responses under one model."""

    id: str
    chosen_sum: float
    chosen_mean: float
    rejected_sum: float
    rejected_mean: float
    n_chosen: int
    n_rejected: int


def logprob_requests(pair: "PreferencePair", eos_token: str | None, chat: bool = True) -> tuple[Any, Any]:
    """LoglikelihoodRequests for (x, y+ EOS) and (x, y- EOS): the sequences DPO trains on."""
    from harness.api.requests import LoglikelihoodRequest
    from harness.prompts import with_eos

    def req(response: str) -> LoglikelihoodRequest:
        return LoglikelihoodRequest(context=pair.prompt, continuation=with_eos(response, eos_token),
                                    system=pair.system, chat=chat)

    return req(pair.chosen), req(pair.rejected)


def measure_logprobs(backend: Any, pairs: Sequence["PreferencePair"], eos_token: str | None,
                     chat: bool = True) -> list[PairLogprobs]:
    """Log-probabilities of every pair's responses, one batched call on `backend`."""
    requests = [r for p in pairs for r in logprob_requests(p, eos_token, chat)]
    answers = backend.run(requests) if requests else []
    out = []
    for k, p in enumerate(pairs):
        c, r = answers[2 * k], answers[2 * k + 1]
        out.append(PairLogprobs(id=p.id, chosen_sum=c.sum, chosen_mean=c.mean, rejected_sum=r.sum,
                                rejected_mean=r.mean, n_chosen=c.n_tokens, n_rejected=r.n_tokens))
    return out


def pair_deltas(before: Sequence[PairLogprobs], after: Sequence[PairLogprobs]) -> list[dict[str, Any]]:
    """Per-pair rows: before/after log-probs and their changes (saved as JSONL for plotting)."""
    if [b.id for b in before] != [a.id for a in after]:
        raise ValueError("likelihood displacement: before and after cover different pairs")
    rows = []
    for b, a in zip(before, after):
        rows.append({
            "id": b.id,
            "before": asdict(b), "after": asdict(a),
            "delta_chosen": a.chosen_sum - b.chosen_sum,
            "delta_rejected": a.rejected_sum - b.rejected_sum,
            "delta_chosen_per_token": a.chosen_mean - b.chosen_mean,
            "delta_rejected_per_token": a.rejected_mean - b.rejected_mean,
        })
    return rows


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ (scipy); None when undefined (fewer than 3 pairs or a constant input)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rho = float(spearmanr(x, y).statistic)
    return None if np.isnan(rho) else rho


def displacement_report(before: Sequence[PairLogprobs], after: Sequence[PairLogprobs],
                        ches: Sequence["CHESScore"] | None = None, seed: int = 0, prefix: str = PREFIX,
                        notes: dict[str, Any] | None = None) -> dict[str, MetricResult]:
    """The §15 summary as metric results (ids `<prefix>:*`, `likelihood_displacement:*` on the
    training pairs, `likelihood_displacement_holdout:*` on held-out ones), CIs bootstrapped over
    pairs. `notes` go into every result's details (e.g. the pairs TRL's length filter dropped)."""
    rows = pair_deltas(before, after)
    n = len(rows)
    out: dict[str, MetricResult] = {}
    if n == 0:
        return out

    def mean_metric(key: str, values: list[float], higher: bool | None, **details: Any) -> None:
        v, lo, hi = mean_ci(values, seed=seed)
        mid = f"{prefix}:{key}"
        out[mid] = MetricResult(mid, v, lo, hi, n, higher, per_item={r["id"]: x for r, x in zip(rows, values)},
                                details={**details, **(notes or {})})

    d_pos = [r["delta_chosen"] for r in rows]
    d_neg = [r["delta_rejected"] for r in rows]
    mean_metric("delta_chosen", d_pos, True, unit="nats (summed over response tokens)")
    mean_metric("delta_rejected", d_neg, False, unit="nats (summed over response tokens)")
    mean_metric("rate", [1.0 if d < 0 else 0.0 for d in d_pos], False,
                definition="share of pairs whose chosen response lost log-probability (delta_chosen < 0)")
    mean_metric("margin_change", [p - q for p, q in zip(d_pos, d_neg)], True,
                definition="mean of delta_chosen - delta_rejected")
    mean_metric("delta_chosen_per_token", [r["delta_chosen_per_token"] for r in rows], True, unit="nats per token")
    mean_metric("delta_rejected_per_token", [r["delta_rejected_per_token"] for r in rows], False,
                unit="nats per token")
    if ches is not None:
        by_id = {s.id: s for s in ches}
        missing = [r["id"] for r in rows if r["id"] not in by_id]
        if missing:
            raise ValueError(f"likelihood displacement: no CHES score for pair {missing[0]!r}")
        for measure in ("ches", "ln_ches"):
            x = np.array([by_id[r["id"]].measure(measure) for r in rows])
            y = np.array(d_pos)
            rho = spearman(x, y)
            mid = f"{prefix}:spearman_{measure}"
            if rho is None:
                out[mid] = MetricResult(mid, None, None, None, n, None, details={"reason": "undefined (n < 3 or constant)"})
                continue
            lo, hi = paired_bootstrap_ci(x, y, seed=seed)
            out[mid] = MetricResult(mid, rho, lo, hi, n, None,
                                    details={"definition": f"Spearman correlation of pre-training {measure} and delta_chosen",
                                             "expected_sign": "negative: higher CHES, more displacement", **(notes or {})})
    return out


def paired_bootstrap_ci(x: np.ndarray, y: np.ndarray, seed: int = 0, n_resamples: int = N_RESAMPLES,
                        confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of Spearman's ρ, resampling *pairs* (x_i, y_i) together.

    `harness.stats.bootstrap_ci` resamples its samples independently, which would break the
    pairing; and a small resample can be constant (ρ undefined), so such draws are dropped
    (scipy's bootstrap would turn the whole interval into NaN).
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    rhos = []
    for idx in rng.integers(0, n, size=(n_resamples, n)):
        rho = spearman(x[idx], y[idx])
        if rho is not None:
            rhos.append(rho)
    if not rhos:
        return None, None
    alpha = (1 - confidence) / 2
    lo, hi = np.percentile(rhos, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def results_to_json(results: dict[str, MetricResult]) -> dict[str, dict[str, Any]]:
    """Metric results as plain JSON (for `ModelArtifact.metrics`)."""
    return {mid: {"value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n,
                  "higher_is_better": r.higher_is_better, "details": r.details}
            for mid, r in results.items()}
