"""One place where a cell's result is put together: metric values, provenance, cache counts,
timings and the benchmark's report layout, into the versioned `RunSummary`.

Everything a cell computed (the plain evaluation, what the method measured itself, what the
attacks found) arrives here as one mapping of metric results; provenance is read from the
cell's backend, artefact and benchmark, so the summary says exactly what produced each number.
"""

from __future__ import annotations

from typing import Any

from harness.api.metric import MetricResult
from harness.provenance import git_commit, now, package_versions
from harness.results import CacheStats, MetricValue, Provenance, ReportLayout, RunSummary


def assemble_summary(*, model: str, method: str, benchmark_name: str, benchmark: Any, results: dict[str, MetricResult],
                     config_hash: str, seed: int, device: str, backend: Any, spec: Any, eval_path: str,
                     artifact: Any | None, reference: dict[str, Any] | None, judges: dict[str, Any] | None,
                     cache: tuple[int, int], timing: dict[str, float],
                     requested: list[str] | None = None, limits: dict[str, int | None] | None = None) -> RunSummary:
    from harness import __version__

    return RunSummary(
        model=model,
        method=method,
        benchmark=benchmark_name,
        metrics={
            mid: MetricValue(value=r.value, ci_low=r.ci_low, ci_high=r.ci_high, n=r.n,
                             higher_is_better=r.higher_is_better, details=r.details)
            for mid, r in results.items()
        },
        provenance=Provenance(
            config_hash=config_hash,
            git_commit=git_commit(),
            harness_version=__version__,
            package_versions=package_versions(),
            seed=seed,
            model_identity=backend.identity,
            base_model=spec.name,
            model_path=eval_path,
            adapter_hash=artifact.hash if artifact else None,
            method_hparams=artifact.hparams if artifact else {},
            chat_template_hash=backend.chat_template_hash,
            dataset_source=benchmark.data.source,
            dataset_hash=benchmark.data.data_hash(),
            benchmark_options=dict(benchmark.options),
            answer_eos=getattr(benchmark, "answer_eos", None),
            limit=(limits or {}).get("limit"),
            train_limit=(limits or {}).get("train_limit"),
            reference=reference,
            judge=judges or None,
            device=device,
            created_at=now(),
        ),
        cache=CacheStats(hits=cache[0], misses=cache[1]),
        timing={k: round(v, 2) for k, v in timing.items()},
        layout=ReportLayout(headline=list(benchmark.headline_metrics),
                            views={title: list(ids) for title, ids in benchmark.views.items()},
                            requested=list(requested or ()), rows_by=getattr(benchmark, "rows_by", None),
                            column_names=dict(getattr(benchmark, "column_names", {}))),
    )
