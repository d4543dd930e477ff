"""Relative metrics stored after a run: AVQI normalised over the compared set (docs/metrics.md §3).

`AVQI_norm = 100 (raw − min) / (max − min + 1e-8)` is relative to the models × methods it was
normalised over, so a stored value carries the id of that set (`model_set`, a hash of its
members) and the members themselves: two numbers normalised over different sets never pass for
comparable. After a run, every finished cell of a benchmark under the output dir is one member;
the leaderboard recomputes the value over the rows it shows (which may be another set).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from harness.io import atomic_write_text
from harness.metrics.avqi import normalise
from harness.results import MetricValue, find_summaries, read_summary

RAW_PREFIX, NORM_PREFIX = "avqi@", "avqi_normalised@"


def model_set_id(members: list[str]) -> str:
    """A short content id of the compared set ("model/method" members, order-free)."""
    return hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:16]


def store_normalised_avqi(output_dir: str | Path, benchmark: str) -> int:
    """Write `avqi_normalised@<split>` into every summary of `benchmark` under `output_dir` that
    has a raw `avqi@<split>`, normalised over all of them (at least two); returns how many
    summaries were written."""
    paths = [p for p in find_summaries(output_dir)]
    summaries = {p: read_summary(p) for p in paths}
    by_metric: dict[str, list[tuple[Path, float, str]]] = defaultdict(list)
    for path, s in summaries.items():
        if s.benchmark != benchmark:
            continue
        for mid, m in s.metrics.items():
            if mid.startswith(RAW_PREFIX) and m.value is not None:
                by_metric[mid].append((path, float(m.value), f"{s.model}/{s.method}"))
    changed: set[Path] = set()
    for mid, rows in by_metric.items():
        if len(rows) < 2:
            continue
        members = [member for _, _, member in rows]
        set_id = model_set_id(members)
        for (path, raw, member), value in zip(rows, normalise([r for _, r, _ in rows])):
            summaries[path].metrics[mid.replace(RAW_PREFIX, NORM_PREFIX, 1)] = MetricValue(
                value=value, ci_low=None, ci_high=None, n=len(rows), higher_is_better=False,
                details={"model_set": set_id, "members": sorted(members), "raw": raw, "of": mid,
                         "rule": "100 (raw - min) / (max - min + 1e-8) over the members"})
            changed.add(path)
    for path in changed:
        atomic_write_text(path, summaries[path].model_dump_json(indent=2) + "\n")
    return len(changed)
