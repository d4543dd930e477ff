"""Model utility (docs/metrics.md §5.6): harmonic mean of the benchmark's utility metrics."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats

from harness.api.metric import Metric, MetricResult
from harness.stats import bootstrap_ci


class ModelUtility(Metric):
    """`scipy.stats.hmean` of the values of `benchmark.utility_metrics` (e.g. retain
    probability, ROUGE-L recall and truth ratio on retain / real authors / world facts).
    None when any part is missing or None. The CI resamples each part's items independently,
    re-aggregates each part with that part's own `aggregate`, then takes the harmonic mean;
    parts without per-item values are held at their value."""

    name = "model_utility"
    higher_is_better = True
    needs_split = False

    def dependencies(self) -> list[str]:
        return list(self.benchmark.utility_metrics)

    def _part_metric(self, build_metric: Callable, part_id: str, part: MetricResult) -> Metric:
        # A part that recorded its aggregator (truth ratio) is rebuilt with that one, so the
        # resampled statistic is the one its value was computed with.
        args = {"aggregator": part.details["aggregator"]} if "aggregator" in part.details else {}
        return build_metric(part_id, self.benchmark, seed=self.seed, **args)

    def compute(self, responses, deps, reference) -> MetricResult:
        from harness.catalog import build_metric

        part_ids = self.dependencies()
        if not part_ids:
            return self.result(None, None, 0, details={"reason": f"benchmark {self.benchmark.name!r} lists no utility metrics"})
        parts = {pid: (deps[pid].value if pid in deps else None) for pid in part_ids}
        missing = [pid for pid, v in parts.items() if v is None]
        if missing:
            return self.result(
                None, None, 0, details={"parts": parts, "reason": f"no value for {', '.join(missing)}"}
            )
        value = float(stats.hmean([float(v) for v in parts.values()]))

        # Parts with per-item values are resampled; the others stay fixed at their value.
        resampled = [pid for pid in part_ids if len(deps[pid].per_item) > 0]
        aggregators: list[Callable] = [self._part_metric(build_metric, pid, deps[pid]).aggregate for pid in resampled]
        samples = [np.fromiter(deps[pid].per_item.values(), dtype=float) for pid in resampled]
        fixed = [float(parts[pid]) for pid in part_ids if pid not in resampled]

        def statistic(*arrays: np.ndarray) -> float:
            vals = [agg(arr) for agg, arr in zip(aggregators, arrays)] + fixed
            return float(stats.hmean(vals))

        ci = bootstrap_ci(samples, statistic, seed=self.seed) if samples else (value, value)
        n = max((len(s) for s in samples), default=0)
        return self.result(value, ci, n, details={"parts": parts})
