"""Forget quality (docs/metrics.md §5.5): KS-test p-value of forget-set truth ratios vs a retain-only model."""

from __future__ import annotations

import numpy as np
from scipy import stats

from harness.api.metric import Metric, MetricResult
from harness.stats import bootstrap_ci

TRUTH_RATIO_FORGET = "truth_ratio@forget"
NO_REFERENCE = "no retain-only reference run; give `--reference MODEL` or set `reference:` in the config"


def ks_pvalue(unlearned: np.ndarray, reference: np.ndarray) -> float:
    return float(stats.ks_2samp(unlearned, reference).pvalue)


class ForgetQuality(Metric):
    """p-value of `scipy.stats.ks_2samp` between the per-item raw forget-set truth ratios R of
    the evaluated model and those of the retain-only reference model (`reference:` run).
    Higher = harder to tell apart from retraining. None when there is no reference run.
    The CI resamples both samples independently (percentile bootstrap), widened where needed
    to contain the point value."""

    name = "forget_quality"
    higher_is_better = True
    needs_split = False
    needs_reference_run = True

    def dependencies(self) -> list[str]:
        return [TRUTH_RATIO_FORGET]

    def reference_dependencies(self) -> list[str]:
        return [TRUTH_RATIO_FORGET]

    def compute(self, responses, deps, reference) -> MetricResult:
        ref = reference.get(TRUTH_RATIO_FORGET) if reference else None
        if ref is None or not ref.per_item:
            return self.result(None, None, 0, details={"reason": NO_REFERENCE})
        own = deps.get(TRUTH_RATIO_FORGET)
        if own is None or not own.per_item:
            return self.result(None, None, 0, details={"reason": f"{TRUTH_RATIO_FORGET} has no per-item truth ratios"})
        a = np.fromiter(own.per_item.values(), dtype=float)
        b = np.fromiter(ref.per_item.values(), dtype=float)
        value = ks_pvalue(a, b)
        lo, hi = bootstrap_ci([a, b], ks_pvalue, seed=self.seed)
        # Resampling with replacement biases the p-value downwards (duplicates, and two
        # resamples differ more than the samples do), so the percentile interval can miss the
        # point estimate (always when the samples coincide and p = 1). Widen it to include it.
        ci = (min(lo, value), max(hi, value))
        return self.result(value, ci, len(a), details={"reference_n": len(b)})
