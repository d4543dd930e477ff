"""The versioned result schema: one summary JSON + per-sample JSONL per (model, method, benchmark).

Layout: `<output_dir>/<model>/<method>/<benchmark>/{summary.json, samples.jsonl}`. Both are
written atomically; a leaderboard is rebuilt from these files alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from harness.errors import HarnessError
from harness.io import atomic_write_jsonl, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = "1.0"
SUMMARY_FILE = "summary.json"
SAMPLES_FILE = "samples.jsonl"


class MetricValue(BaseModel):
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    higher_is_better: bool | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Provenance(BaseModel):
    config_hash: str
    git_commit: str | None = None
    harness_version: str
    package_versions: dict[str, str] = Field(default_factory=dict)
    seed: int
    model_identity: str = ""  # content hash of the weights (+ adapter)
    base_model: str = ""
    model_path: str = ""
    adapter_hash: str | None = None
    method_hparams: dict[str, Any] = Field(default_factory=dict)
    chat_template_hash: str | None = None
    dataset_source: str = ""
    dataset_hash: str = ""
    benchmark_options: dict[str, Any] = Field(default_factory=dict)
    # Whether answers were trained and scored with the tokenizer's EOS appended (open-unlearning's
    # encoding; docs/metrics.md "Answer EOS"); None in results written before the switch existed.
    answer_eos: bool | None = None
    # The run's item limits: `limit` cut evaluation only; `train_limit` the data methods trained on.
    limit: int | None = None
    train_limit: int | None = None
    judge: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None  # the reference run a metric compared against
    device: str = ""
    created_at: str = ""


class CacheStats(BaseModel):
    hits: int = 0
    misses: int = 0


class ReportLayout(BaseModel):
    """How the benchmark wants its results shown, written with them so that a leaderboard
    needs nothing but the result files: the headline metric ids and further titled views
    (shell-style patterns such as "asr@adversarial[attack_family=*]" match data-dependent ids)."""

    headline: list[str] = Field(default_factory=list)
    views: dict[str, list[str]] = Field(default_factory=dict)
    # The metric ids the run asked for (`--metrics`); shown instead of the headline when given.
    requested: list[str] = Field(default_factory=list)
    # A breakdown key whose values become rows (UnLOK-VQA: "attack", one row per defence × attack),
    # and the source's own column names for the metrics, used by the pivoted CSV.
    rows_by: str | None = None
    column_names: dict[str, str] = Field(default_factory=dict)


class RunSummary(BaseModel):
    schema_version: str = SCHEMA_VERSION
    model: str
    method: str
    benchmark: str
    metrics: dict[str, MetricValue]
    provenance: Provenance
    cache: CacheStats = Field(default_factory=CacheStats)
    timing: dict[str, float] = Field(default_factory=dict)
    layout: ReportLayout = Field(default_factory=ReportLayout)


class SampleRecord(BaseModel):
    """One item of one split: what was asked, what the model said, every metric's value on it."""

    split: str
    item_id: str
    prompt: str = ""
    reference: str = ""
    generation: str | None = None
    values: dict[str, float] = Field(default_factory=dict)
    notes: dict[str, str] = Field(default_factory=dict)  # metric id -> e.g. the judge verdicts


def cell_dir(output_dir: str | Path, model: str, method: str, benchmark: str) -> Path:
    return Path(output_dir) / _safe(model) / _safe(method) / _safe(benchmark)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_cell(directory: Path, summary: RunSummary, samples: list[SampleRecord]) -> None:
    """Samples first, summary last: a summary on disk means the cell is complete."""
    atomic_write_jsonl(directory / SAMPLES_FILE, [s.model_dump() for s in samples])
    atomic_write_text(directory / SUMMARY_FILE, summary.model_dump_json(indent=2) + "\n")


def read_summary(path: str | Path) -> RunSummary:
    try:
        return RunSummary.model_validate_json(Path(path).read_text())
    except (OSError, ValidationError, ValueError) as e:
        raise HarnessError(f"not a valid result summary: {path} ({str(e).splitlines()[0]})") from e


def read_samples(path: str | Path) -> list[SampleRecord]:
    with open(path, encoding="utf-8") as f:
        return [SampleRecord.model_validate(json.loads(line)) for line in f if line.strip()]


def find_summaries(results_dir: str | Path) -> list[Path]:
    return sorted(Path(results_dir).rglob(SUMMARY_FILE))


def report_layouts(results_dir: str | Path) -> dict[str, ReportLayout]:
    """Benchmark name -> the report layout its result files carry (the first one found), with
    `requested` the union of what every run of that benchmark asked for (runs merge in one dir)."""
    out: dict[str, ReportLayout] = {}
    for path in find_summaries(results_dir):
        try:
            summary = read_summary(path)
        except HarnessError:
            continue
        layout = summary.layout
        if summary.benchmark not in out:
            if layout.headline or layout.views or layout.requested:
                out[summary.benchmark] = layout.model_copy(deep=True)
        else:
            known = out[summary.benchmark].requested
            known += [m for m in layout.requested if m not in known]
    return out


# --- Results as data frames -------------------------------------------------------------------
# Why here: result files are the one input of every report, and a researcher's own analysis
# (a notebook, a paper's plot) should start from the same tidy table the reports use.

DIRECTIONS = {True: "higher", False: "lower"}
FRAME_COLUMNS = [
    "model", "method", "benchmark", "metric", "value", "ci_low", "ci_high", "n", "direction",
    "config_hash", "git_commit", "seed", "model_identity", "adapter_hash", "base_model",
    "dataset_source", "dataset_hash", "judge", "reference_model", "harness_version", "created_at", "path",
]
SAMPLE_COLUMNS = ["model", "method", "benchmark", "split", "item_id", "prompt", "reference", "generation",
                  "metric", "value", "note"]


def _summaries(results_dir: str | Path) -> list[tuple[Path, RunSummary]]:
    if not Path(results_dir).is_dir():
        raise HarnessError(f"results directory not found: {results_dir}")
    paths = find_summaries(results_dir)
    if not paths:
        raise HarnessError(f"no result summaries under {results_dir}")
    return [(p, read_summary(p)) for p in paths]


def provenance_keys(p: Provenance) -> dict[str, Any]:
    """The provenance fields a reader compares rows by (weights, adapter, data, judge, code, seed);
    the judge is its JSON text so that the column holds one comparable value."""
    return {
        "config_hash": p.config_hash, "git_commit": p.git_commit, "seed": p.seed,
        "model_identity": p.model_identity, "adapter_hash": p.adapter_hash, "base_model": p.base_model,
        "dataset_source": p.dataset_source, "dataset_hash": p.dataset_hash,
        "judge": json.dumps(p.judge, sort_keys=True) if p.judge else None,
        "reference_model": (p.reference or {}).get("model"),
        "harness_version": p.harness_version, "created_at": p.created_at,
    }


def load(results_dir: str | Path) -> "pd.DataFrame":
    """A tidy frame: one row per (model, method, benchmark, metric) with value, 95% CI, n,
    direction ("higher" / "lower" is better, None when undeclared) and the provenance keys."""
    import pandas as pd

    rows = []
    for path, s in _summaries(results_dir):
        prov = provenance_keys(s.provenance)
        for name, m in s.metrics.items():
            rows.append({"model": s.model, "method": s.method, "benchmark": s.benchmark, "metric": name,
                         "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n,
                         "direction": DIRECTIONS.get(m.higher_is_better), **prov, "path": str(path)})
    df = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    return df.astype({"value": float, "ci_low": float, "ci_high": float, "n": "int64"})


def load_samples(results_dir: str | Path) -> "pd.DataFrame":
    """The per-sample frame: one row per (cell, split, item, metric) with the item's prompt,
    reference answer, generation, the metric's value on it and its note (e.g. a judge verdict).
    An item no metric scored keeps one row with metric None."""
    import pandas as pd

    rows = []
    for path, s in _summaries(results_dir):
        samples_path = path.parent / SAMPLES_FILE
        if not samples_path.is_file():
            continue
        for r in read_samples(samples_path):
            base = {"model": s.model, "method": s.method, "benchmark": s.benchmark, "split": r.split,
                    "item_id": r.item_id, "prompt": r.prompt, "reference": r.reference, "generation": r.generation}
            metrics = list(dict.fromkeys([*r.values, *r.notes])) or [None]
            rows += [{**base, "metric": k, "value": r.values.get(k) if k else None,
                      "note": r.notes.get(k) if k else None} for k in metrics]
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS).astype({"value": float})
