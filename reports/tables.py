"""Which tables a reader sees: per benchmark, the metrics asked for (else the headline), at most
MAX_COLUMNS wide, then the benchmark's views; a breakdown turned into rows where the benchmark's
layout says so (UnLOK-VQA: one row per defence / attack).

Built from `reports.leaderboard.build_leaderboard`; rendered by `reports.render`.
"""

from __future__ import annotations

import re

import pandas as pd

from harness.reports.leaderboard import Leaderboard, build_leaderboard
from harness.reports.render import render_csv

MAX_COLUMNS = 10  # metric columns per table: wider ones are split (sort column repeated) to stay readable


def report_tables(df: pd.DataFrame, layouts: dict, sort_by: str | None = None,
                  benchmark: str | None = None) -> tuple[Leaderboard, list[Leaderboard]]:
    """The full leaderboard (every metric: the CSV) and the tables a reader sees, in the terminal
    and in leaderboard.md alike: per benchmark, the metrics the run asked for (else the layout's
    headline) sorted by `sort_by` (else the first of them), that column first, then the
    benchmark's views; each at most MAX_COLUMNS metrics wide."""
    if benchmark is not None and benchmark not in set(df.benchmark):
        build_leaderboard(df, benchmark=benchmark)  # the one error message for an unknown benchmark
    names = sorted(df["benchmark"].unique()) if benchmark is None else [benchmark]
    multi = benchmark is None and len(names) > 1
    shown = {name: _shown_metrics(df, name, layouts.get(name), sort_by) for name in names}
    first = shown[names[0]][0] if names and shown[names[0]] else None
    default_sort = (f"{names[0]}/{first}" if multi else first) if first else None
    full = build_leaderboard(df, benchmark=benchmark, sort_by=sort_by or default_sort)
    tables: list[Leaderboard] = []
    for name in names:
        present = list(dict.fromkeys(df.loc[df.benchmark == name, "metric"]))
        layout = layouts.get(name)
        asked = bool(layout is not None and layout.requested)
        if layout is not None and layout.rows_by:
            tables += breakdown_tables(df, name, layout)
            continue
        chosen = shown[name]
        note = (f"Showing {len(chosen)} of {len(present)} metrics ({'those asked for' if asked else 'the headline'}); "
                "every metric is in leaderboard.csv.") if len(chosen) < len(present) else None
        tables += _narrow(df, name, chosen, f"Leaderboard: {name}", note)
        for title, patterns in ({} if asked or layout is None else layout.views).items():
            chosen = _matching(patterns, present)
            if chosen:
                tables += _narrow(df, name, chosen, f"{name}: {title}")
    return full, tables


def pivot_breakdown(df: pd.DataFrame, benchmark: str, key: str) -> pd.DataFrame:
    """One benchmark's rows with breakdown `key` turned into rows: metric `asr[attack=bb]` of
    method m becomes metric `asr` of method "m / bb"; metrics without the key (per-cell values
    such as Δ-Acc) are repeated on each of the cell's rows, as the authors' result tables do. Rows:
    per model, "none" first, then the methods by name; within a method the values in the order
    the results list them (the run's attack order)."""
    part = df[df.benchmark == benchmark]
    pattern = re.compile(rf"^(?P<name>[^\[]+)\[{re.escape(key)}=(?P<value>[^\]]+)\]$")
    split = part.metric.str.extract(pattern)
    broken = part[split["name"].notna()].assign(metric=split["name"].dropna(),
                                                 _value=split["value"].dropna())
    plain = part[split["name"].isna()]
    rows = []
    groups = dict(list(broken.groupby(["model", "method"], sort=False)))
    for model, method in sorted(groups, key=lambda p: (p[0], p[1] != "none", p[1])):  # as the other tables
        cell = groups[(model, method)]
        for value in dict.fromkeys(cell["_value"]):
            own = cell[cell["_value"] == value].drop(columns="_value")
            shared = plain[(plain.model == model) & (plain.method == method)]
            rows.append(pd.concat([own, shared]).assign(method=f"{method} / {value}"))
    return pd.concat(rows, ignore_index=True) if rows else part.iloc[0:0]


def breakdown_tables(df: pd.DataFrame, benchmark: str, layout: object) -> list[Leaderboard]:
    """The tables of a benchmark whose layout turns a breakdown into rows (`rows_by`): its
    headline metrics (else all) with one row per method × breakdown value."""
    key = layout.rows_by  # type: ignore[attr-defined]
    pivot = pivot_breakdown(df, benchmark, key)
    if pivot.empty:
        return []
    present = list(dict.fromkeys(pivot.metric))
    chosen = _matching(layout.requested or layout.headline or [], present) or present  # type: ignore[attr-defined]
    return _narrow(pivot, benchmark, chosen, f"Leaderboard: {benchmark} (rows: method / {key})",
                   in_order=True)


def breakdown_csv(df: pd.DataFrame, benchmark: str, layout: object) -> str:
    """The pivoted table in the source's own column layout (UnLOK-VQA: result_agg.csv's): one row
    per method / breakdown value, columns renamed by the layout's `column_names`, each metric's
    CI and n beside it."""
    pivot = pivot_breakdown(df, benchmark, layout.rows_by)  # type: ignore[attr-defined]
    names = layout.column_names  # type: ignore[attr-defined]
    order = [m for m in names if m in set(pivot.metric)] + sorted(set(pivot.metric) - set(names))
    lb = build_leaderboard(pivot, benchmark=benchmark, metrics=order, in_order=True) if order else None
    if lb is None:
        return ""
    out = lb.numeric.rename(columns=lambda c: _renamed(c, names))
    keep = ["model", "method", *(c for m in order for c in (names.get(m, m), f"{names.get(m, m)}_ci_low",
                                                           f"{names.get(m, m)}_ci_high", f"{names.get(m, m)}_n"))]
    out = out[[c for c in keep if c in out.columns]]
    out.insert(0, "Name", out["model"] + " / " + out["method"])
    return render_csv(Leaderboard(table=out, numeric=out, columns=[], sort_by=""))


def _renamed(column: str, names: dict[str, str]) -> str:
    for metric, new in names.items():
        for suffix in ("", "_ci_low", "_ci_high", "_n"):
            if column == metric + suffix:
                return new + suffix
    return column


def _narrow(df: pd.DataFrame, benchmark: str, metrics: list[str], title: str, note: str | None = None,
            in_order: bool = False) -> list[Leaderboard]:
    """One table, or several of at most MAX_COLUMNS metrics each, every one led by (and sorted
    by) the first metric."""
    head, rest = metrics[0], metrics[1:]
    chunks = [rest[i:i + MAX_COLUMNS - 1] for i in range(0, len(rest), MAX_COLUMNS - 1)] or [[]]
    out = []
    for k, chunk in enumerate(chunks, 1):
        lb = build_leaderboard(df, benchmark=benchmark, sort_by=head, metrics=[head, *chunk], in_order=in_order)
        lb.title = title + (f" ({k}/{len(chunks)})" if len(chunks) > 1 else "")
        if note:
            lb.legend.append(note)
        out.append(lb)
    return out


def _shown_metrics(df: pd.DataFrame, name: str, layout: object, sort_by: str | None) -> list[str]:
    """The metric ids of one benchmark that lead its report: those asked for (an id also matches
    its `id[...]` breakdowns), else the layout's headline, else all; `sort_by` (bare or `name/id`) first."""
    present = list(dict.fromkeys(df.loc[df.benchmark == name, "metric"]))
    requested = getattr(layout, "requested", None) or []
    if requested:
        chosen = _matching([p for m in requested for p in (m, m + "[*")], present)
    else:
        chosen = _matching(getattr(layout, "headline", None) or [], present)
    chosen = chosen or present
    if sort_by:
        local = sort_by[len(name) + 1:] if sort_by.startswith(f"{name}/") else sort_by
        if local in present:
            chosen = [local, *(m for m in chosen if m != local)]
    return chosen


def _matching(patterns: tuple[str, ...] | list[str], present: list[str]) -> list[str]:
    """Metric ids in `present` that the patterns name, in pattern order (fnmatch; [ ] taken literally)."""
    import fnmatch

    out: list[str] = []
    for pattern in patterns:
        literal = pattern.replace("[", "[[]")  # metric ids contain brackets: only * and ? are wildcards
        out += [m for m in present if fnmatch.fnmatchcase(m, literal) and m not in out]
    return out
