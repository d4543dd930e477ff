"""PrivLeak (docs/metrics.md §8): MUSE's relative Min-k% AUC gap to the retain-only model."""

from __future__ import annotations

from harness.api.metric import Metric, MetricResult
from harness.metrics.mia import mia_auc_ranks
from harness.stats import bootstrap_ci

MIN_K = "mia_min_k"
DEFAULT_REFERENCE_AUC = 0.5


def privleak(auc: float, auc_reference: float) -> float:
    """(AUC'_unl − AUC'_ref) / AUC'_ref × 100 with AUC' = 1 − AUC (the MUSE convention)."""
    flipped, flipped_ref = 1.0 - auc, 1.0 - auc_reference
    return (flipped - flipped_ref) / flipped_ref * 100.0


class PrivLeak(Metric):
    """PrivLeak on the Min-k% attack (k = 0.4, `mia_min_k`): AUC' = 1 − AUC (forget = 0,
    holdout = 1), value = (AUC'_unl − AUC'_ref) / AUC'_ref × 100, where AUC_ref is the
    reference (retain-only) run's `mia_min_k` AUC. Without a reference run AUC_ref = 0.5,
    as open-unlearning defaults (`details['reference']` says which). ≈ 0 is ideal; the sign
    tells over- from under-unlearning, so there is no better direction (None).
    The CI resamples this run's forget and holdout Min-k% scores independently (percentile
    bootstrap), with the reference AUC held fixed."""

    name = "privleak"
    higher_is_better = None
    best_at = 0.0  # as leaky as the retain-only model; the sign tells over- from under-unlearning
    needs_split = False

    def dependencies(self) -> list[str]:
        return [MIN_K]

    def reference_dependencies(self) -> list[str]:
        return [MIN_K]

    def compute(self, responses, deps, reference) -> MetricResult:
        from harness.catalog import build_metric

        own = deps.get(MIN_K)
        if own is None or own.value is None:
            return self.result(None, None, 0, details={"reason": f"{MIN_K} has no value"})
        ref = (reference or {}).get(MIN_K)
        if ref is not None and ref.value is not None:
            auc_ref, source = float(ref.value), f"reference run's {MIN_K} AUC"
        else:
            auc_ref, source = DEFAULT_REFERENCE_AUC, "none: no reference run, default AUC_ref = 0.5"
        details = {"auc": own.value, "auc_reference": auc_ref, "reference": source, "convention": "AUC' = 1 - AUC"}
        if auc_ref == 1.0:
            return self.result(None, None, own.n, details={**details, "reason": "reference AUC' = 1 - AUC_ref is 0"})
        value = privleak(own.value, auc_ref)
        attack = build_metric(MIN_K, self.benchmark, seed=self.seed)
        forget, holdout = attack.split_scores(own)
        if len(forget) and len(holdout):
            ci = bootstrap_ci([forget, holdout], lambda f, h: privleak(mia_auc_ranks(f, h), auc_ref), seed=self.seed)
        else:
            ci = (value, value)
        return self.result(value, ci, own.n, details=details)
