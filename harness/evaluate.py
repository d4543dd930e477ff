"""Evaluate one model on one benchmark: metrics -> requests -> (cached) backend -> results.

All metrics' requests are gathered and de-duplicated first, so a question that several
metrics ask (the greedy answer for ROUGE and exact match) costs one model call. Metrics are
computed in dependency order; composite metrics receive their parts' results, and metrics
that compare against a reference run receive that run's results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from harness.errors import ConfigError
from harness.api.metric import ItemMetric, Metric, MetricResult
from harness.api.requests import LoglikelihoodRequest, Request
from harness.results import SAMPLES_FILE, SUMMARY_FILE, SampleRecord, read_samples, read_summary


@dataclass
class Evaluation:
    results: dict[str, MetricResult]
    samples: list[SampleRecord]


def resolve_metrics(benchmark, metric_ids: list[str], seed: int) -> list[Metric]:
    """Instantiate the metrics and their dependencies, dependencies first (a topological order)."""
    from harness.catalog import build_metric

    ordered: dict[str, Metric] = {}
    visiting: set[str] = set()

    def visit(metric_id: str) -> None:
        if metric_id in ordered:
            return
        if metric_id in visiting:
            raise ConfigError(f"metric dependency cycle through {metric_id!r}")
        visiting.add(metric_id)
        metric = build_metric(metric_id, benchmark, seed=seed)
        for dep in metric.dependencies():
            visit(dep)
        visiting.discard(metric_id)
        ordered[metric.id] = metric

    for metric_id in metric_ids:
        visit(metric_id)
    return list(ordered.values())


def collect_requests(metrics: list[Metric]) -> list[Request]:
    return list(dict.fromkeys(r for m in metrics for r in m.requests()))


def ask(backend, requests: list[Request]) -> dict[Request, Any]:
    """Responses to `requests`: a log-likelihood request asked both with and without `moments`
    is sent once, with them (its response answers both forms)."""
    with_moments = {r for r in requests if isinstance(r, LoglikelihoodRequest) and r.moments}
    twin = {r: replace(r, moments=True) for r in requests
            if isinstance(r, LoglikelihoodRequest) and not r.moments and replace(r, moments=True) in with_moments}
    send = [r for r in requests if r not in twin]
    responses = dict(zip(send, backend.run(send))) if send else {}
    responses.update({r: responses[t] for r, t in twin.items()})
    return responses


def evaluate(
    benchmark,
    metrics: list[Metric],
    backend,
    reference: Mapping[str, MetricResult] | None = None,
    judges=None,
) -> Evaluation:
    """Requests -> responses -> (judge requests -> verdicts) -> metric results.

    `judges` is the run's `JudgePanel`; without one, the default panel (pattern judges,
    no model) answers judged metrics.
    """
    responses: dict = ask(backend, collect_requests(metrics))
    judge_requests = list(dict.fromkeys(jr for m in metrics for jr in m.judge_requests(responses)))
    if judge_requests:
        if judges is None:
            from harness.judges.panel import JudgePanel

            judges = JudgePanel()
        responses.update(judges.judge(judge_requests))
    results: dict[str, MetricResult] = {}
    for metric in metrics:
        deps = {d: results[d] for d in metric.dependencies()}
        result = metric.compute(responses, deps, reference or {})
        # No silent drops: answers to inputs the backend had to cut are counted in every result.
        result.details["truncated"] = count_truncated(metric.requests(), responses)
        results[metric.id] = result
        for part_id, part in result.parts.items():
            results[part_id] = part
    return Evaluation(results=results, samples=_samples(benchmark, metrics, results, responses))


def count_truncated(requests: list[Request], responses: Mapping) -> int:
    """How many of the metric's requests were answered on a cut input (the response's `truncated`)."""
    return sum(1 for r in dict.fromkeys(requests) if getattr(responses.get(r), "truncated", 0))


def _samples(benchmark, metrics: list[Metric], results: dict[str, MetricResult], responses) -> list[SampleRecord]:
    """One record per (split, item): prompt, reference, greedy generation, every metric's value."""
    records: dict[tuple[str, str], SampleRecord] = {}
    for metric in metrics:
        per_item = results[metric.id].per_item
        for split, item in _metric_items(metric):
            key = (split, item.id)
            rec = records.get(key)
            if rec is None:
                rec = records[key] = SampleRecord(
                    split=split, item_id=item.id, prompt=benchmark.prompt(item), reference=benchmark.reference(item)
                )
            if item.id in per_item:
                rec.values[metric.id] = per_item[item.id]
            note = metric.item_note(item, responses) if isinstance(metric, ItemMetric) else None
            if note:
                rec.notes[metric.id] = note
            if rec.generation is None and isinstance(metric, ItemMetric):
                for req in metric.item_requests(item):
                    if req.kind == "generate" and not req.sampled:
                        rec.generation = responses[req].texts[0]
                        break
    return list(records.values())


def _metric_items(metric: Metric) -> list[tuple[str, object]]:
    """(split, item) pairs a metric scored: its one split, or each role split (the MIA family)."""
    if metric.split is not None:
        return [(metric.split, item) for item in metric.items]
    role_splits = getattr(metric, "role_splits", {})
    return [(split, item) for role, split in role_splits.items() for item in metric.role_items(role)]


def load_reference(cell: str | Path) -> dict[str, MetricResult]:
    """Metric results (aggregates and per-item values) of an earlier run's cell directory."""
    cell = Path(cell)
    summary = read_summary(cell / SUMMARY_FILE)
    samples = read_samples(cell / SAMPLES_FILE) if (cell / SAMPLES_FILE).exists() else []
    out: dict[str, MetricResult] = {}
    for metric_id, mv in summary.metrics.items():
        per_item = {s.item_id: s.values[metric_id] for s in samples if metric_id in s.values}
        out[metric_id] = MetricResult(
            metric_id, mv.value, mv.ci_low, mv.ci_high, mv.n, mv.higher_is_better, per_item, dict(mv.details)
        )
    return out
