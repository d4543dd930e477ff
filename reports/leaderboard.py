"""A leaderboard of models × methods, rebuilt from result files alone.

Why from files only: a leaderboard must be reproducible by anyone holding the result
directory, without the models, the data or the config that produced it, and every number
must carry the provenance needed to trust it (config, commit, seed, weights, data).

Cell format (one for every report): `value [ci_low, ci_high]`, e.g. `0.412 [0.350, 0.470]`;
`value` alone when the metric has no confidence interval; `—` when there is no value.
Numbers have 3 decimals (`0.412`); magnitudes below 0.001 or from 1e6 up use 3 significant
digits in scientific notation (`1.23e-05`), so tiny p-values do not read as `0.000`.
The header carries the direction (`↑` higher is better, `↓` lower is better) and `(n=…)` when
every row has the same n; otherwise each cell ends in `(n=…)`.

All text read from result files is untrusted; it is escaped only when rendered (Markdown,
CSV, terminal) through `reports.escape`, so `Leaderboard` itself holds the raw strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.markup import escape as rich_escape
from rich.table import Table

from harness.errors import HarnessError
from harness.io import atomic_write_text, exclusive
from harness.results import find_summaries, read_summary
from harness.reports.escape import csv_safe, markdown_escape, one_line

MISSING = "—"
PROVENANCE_FIELDS = ("config_hash", "git_commit", "seed", "model_identity", "dataset_hash")
COLUMNS = [
    "model", "method", "benchmark", "metric", "value", "ci_low", "ci_high", "n",
    "higher_is_better", *PROVENANCE_FIELDS, "path",
]
_SHORT = {"config_hash": 8, "git_commit": 7, "model_identity": 12, "dataset_hash": 12}
_LABEL = {"config_hash": "config", "git_commit": "commit", "seed": "seed",
          "model_identity": "model", "dataset_hash": "data"}
_ARROW = {True: "↑", False: "↓"}


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """One row per (model, method, benchmark, metric) from every summary.json under the dir."""
    paths = find_summaries(results_dir)
    if not paths:
        raise HarnessError(f"no result summaries under {results_dir}")
    rows = []
    for path in paths:
        s = read_summary(path)
        p = s.provenance
        for name, m in s.metrics.items():
            rows.append({
                "model": s.model, "method": s.method, "benchmark": s.benchmark, "metric": name,
                "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n,
                "higher_is_better": m.higher_is_better, "config_hash": p.config_hash,
                "git_commit": p.git_commit, "seed": p.seed, "model_identity": p.model_identity,
                "dataset_hash": p.dataset_hash, "path": str(path),
                "reason": m.details.get("reason") if m.value is None else None,
            })
    df = pd.DataFrame(rows, columns=[*COLUMNS, "reason"])
    dup = df[df.duplicated(["model", "method", "benchmark", "metric"], keep=False)]
    if not dup.empty:  # two runs of one cell (e.g. a parent of two output dirs): which to show?
        raise HarnessError(f"the same result appears in several files: {', '.join(sorted(set(dup.path)))}")
    return with_normalised_avqi(df)


def with_normalised_avqi(df: pd.DataFrame) -> pd.DataFrame:
    """Add `avqi_normalised@...` rows: 100 (raw - min) / (max - min + 1e-8) over the rows
    (models x methods) of each benchmark, so 0 is the best of this leaderboard (docs/metrics.md §3).

    Relative to the compared set: the values a run stored (normalised over its own cells, with
    their set's id) are replaced by ones over exactly the rows of this leaderboard.
    """
    from harness.metrics.avqi import normalise

    df = df[~df.metric.str.startswith("avqi_normalised@")]
    raw = df[df.metric.str.startswith("avqi@") & df.value.notna()]
    extra = []
    for (_, metric), group in raw.groupby(["benchmark", "metric"]):
        if len(group) < 2:
            continue
        rows = group.copy()
        rows["metric"] = metric.replace("avqi@", "avqi_normalised@", 1)
        rows["value"] = normalise(list(rows["value"].astype(float)))
        rows[["ci_low", "ci_high"]] = None
        extra.append(rows)
    return pd.concat([df, *extra], ignore_index=True) if extra else df


@dataclass
class MetricColumn:
    """One metric column: `key` is the metric, prefixed `benchmark/` when benchmarks mix."""

    key: str
    benchmark: str
    metric: str
    higher_is_better: bool | None
    n: int | None  # shown in the header when the same for every row, else None

    @property
    def header(self) -> str:
        arrow = f" {_ARROW[self.higher_is_better]}" if self.higher_is_better is not None else ""
        return f"{self.key}{arrow}" + (f" (n={self.n})" if self.n is not None else "")


@dataclass
class Leaderboard:
    """`table`: formatted cells (model, method, one column per `columns[i].key`), best first.

    `numeric`: the same rows as numbers (`<key>`, `<key>_ci_low`, `<key>_ci_high`, `<key>_n`)
    plus full provenance; `footnotes[i]` is the provenance of `table` row i; `legend` explains
    the cell format, the directions and the sort.
    """

    table: pd.DataFrame
    numeric: pd.DataFrame
    columns: list[MetricColumn]
    sort_by: str
    footnotes: list[str] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)
    title: str = "Leaderboard"

    @property
    def headers(self) -> list[str]:
        return ["model", "method", *(c.header for c in self.columns)]


def format_number(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and not 1e-3 <= abs(v) < 1e6:
        return f"{v:.2e}"
    return f"{v:.3f}"


def format_cell(value: float | None, ci_low: float | None, ci_high: float | None,
                n: int | None = None) -> str:
    """`value [ci_low, ci_high]`, plus ` (n=…)` when n is given (it varies between rows)."""
    if _missing(value):
        return MISSING
    s = format_number(value)
    if not _missing(ci_low) and not _missing(ci_high):
        s += f" [{format_number(ci_low)}, {format_number(ci_high)}]"
    return s + (f" (n={int(n)})" if not _missing(n) else "")


def build_leaderboard(df: pd.DataFrame, benchmark: str | None = None, sort_by: str | None = None,
                      metrics: list[str] | None = None, in_order: bool = False) -> Leaderboard:
    """Rows = model × method, best first by `sort_by` (default: the first metric column), which
    becomes the first metric column so the order is explained by what is read first.
    `in_order`: keep the rows in the order `df` lists them instead (a defence × attack table)."""
    missing_cols = [c for c in COLUMNS if c not in df.columns]
    if missing_cols:
        raise HarnessError(f"results table lacks columns: {', '.join(missing_cols)}")
    if benchmark is not None:
        if benchmark not in set(df.benchmark):
            raise HarnessError(f"no results for benchmark {benchmark!r}; available: "
                               f"{', '.join(sorted(set(df.benchmark)))}")
        df = df[df.benchmark == benchmark]
    if df.empty:
        raise HarnessError("no metrics in the results")
    multi = df.benchmark.nunique() > 1
    did_nothing = no_effect_rows(df)  # read on every forget metric, shown or not
    df = df.assign(key=(df.benchmark + "/" + df.metric) if multi else df.metric)
    keys = dict.fromkeys(df.sort_values("benchmark", kind="stable").key)  # grouped by benchmark
    columns = [_column(df[df.key == k]) for k in keys]
    if metrics:
        columns = list(dict.fromkeys(_resolve(m, columns).key for m in metrics))
        columns = [_column(df[df.key == k]) for k in columns]
    sort_col = _resolve(sort_by, columns) if sort_by else columns[0]
    columns = [sort_col, *(c for c in columns if c.key != sort_col.key)]  # the sort column first
    reserved = {"model", "method", *PROVENANCE_FIELDS}
    clash = [c.key for c in columns if c.key in reserved]
    if clash:
        raise HarnessError(f"metric names clash with leaderboard columns: {', '.join(clash)}")
    df = df[df.key.isin([c.key for c in columns])]

    lookup = {(r.model, r.method, r.key): r for r in df.itertuples(index=False)}
    pairs = list(dict.fromkeys(zip(df.model, df.method)))
    if not in_order:
        pairs = sorted(pairs, key=lambda p: (p[0], p[1] != "none", p[1]))
    records, notes = [], {}
    for model, method in pairs:
        rec: dict = {"model": model, "method": method}
        for c in columns:
            r = lookup.get((model, method, c.key))
            rec[c.key] = _num(r.value) if r else math.nan
            rec[f"{c.key}_ci_low"] = _num(r.ci_low) if r else math.nan
            rec[f"{c.key}_ci_high"] = _num(r.ci_high) if r else math.nan
            rec[f"{c.key}_n"] = int(r.n) if r else None
        cells = df[(df.model == model) & (df.method == method)]
        prov = {f: list(dict.fromkeys(v for v in cells[f] if not _missing(v) and v != ""))
                for f in PROVENANCE_FIELDS}  # per benchmark they may differ: list them all
        for f, vals in prov.items():
            rec[f] = vals[0] if len(vals) == 1 else ("; ".join(map(str, vals)) or None)
        notes[(model, method)] = f"{model} / {method}: " + ", ".join(
            f"{_LABEL[f]} {'; '.join(_short(v, _SHORT.get(f)) for v in vals) or MISSING}"
            for f, vals in prov.items())
        records.append(rec)
    numeric = pd.DataFrame(records)
    numeric["no_effect"] = [any((m, me, b) in did_nothing for b in set(df.benchmark))
                            for m, me in zip(numeric.model, numeric.method)]
    for c in columns:
        numeric[f"{c.key}_n"] = pd.array(numeric[f"{c.key}_n"], dtype="Int64")
    if not in_order:
        numeric = numeric.sort_values(sort_col.key, ascending=sort_col.higher_is_better is False,
                                      na_position="last", kind="stable").reset_index(drop=True)

    table = numeric[["model", "method"]].copy()
    table["method"] = [f"{me} {NO_EFFECT_MARK}" if flag else me for me, flag in zip(numeric.method, numeric.no_effect)]
    for c in columns:
        table[c.key] = [
            format_cell(v, lo, hi, n if c.n is None else None)
            for v, lo, hi, n in zip(numeric[c.key], numeric[f"{c.key}_ci_low"],
                                    numeric[f"{c.key}_ci_high"], numeric[f"{c.key}_n"])
        ]
    return Leaderboard(
        table=table, numeric=numeric, columns=columns, sort_by=sort_col.key,
        footnotes=[notes[(m, me)] for m, me in zip(numeric.model, numeric.method)],
        legend=_legend(columns, sort_col) + _reasons(df, columns) + _no_effect_legend(did_nothing),
        title=f"Leaderboard: {benchmark}" if benchmark else "Leaderboard",
    )


NO_EFFECT_MARK = "(did nothing?)"


def no_effect_rows(df: pd.DataFrame) -> dict[tuple[str, str, str], list[str]]:
    """(model, method, benchmark) -> its forget metrics, for each unlearned row whose forget metrics
    all lie within the 95% CIs of the same model's method-less ("none") row: a method that did
    nothing measurable. Forget metrics are the ids on the `forget` role (`...@forget`, with or
    without a `[part]`); a row needs at least one that both rows report with the original's CI."""
    out: dict[tuple[str, str, str], list[str]] = {}
    forget = df[df.metric.map(lambda m: m.partition("@")[2].partition("[")[0] == "forget")]
    if forget.empty:
        return out
    forget = forget[[not _missing(v) for v in forget.value]]
    original = {(r.model, r.benchmark, r.metric): r for r in forget[forget.method == "none"].itertuples(index=False)}
    for (model, method, bench), rows in forget[forget.method != "none"].groupby(["model", "method", "benchmark"]):
        checked = []
        for r in rows.itertuples(index=False):
            o = original.get((model, bench, r.metric))
            if o is None or _missing(o.ci_low) or _missing(o.ci_high):
                continue
            if not float(o.ci_low) <= float(r.value) <= float(o.ci_high):
                break
            checked.append(r.metric)
        else:
            if checked:
                out[(model, method, bench)] = checked
    return out


def _no_effect_legend(did_nothing: dict[tuple[str, str, str], list[str]]) -> list[str]:
    return [f"{NO_EFFECT_MARK} {model} / {method} on {bench}: every forget metric ({', '.join(metrics)}) lies within "
            "the 95% CI of the original model's (method none); the method may have done nothing."
            for (model, method, bench), metrics in sorted(did_nothing.items())]


def _column(rows: pd.DataFrame) -> MetricColumn:
    dirs = {bool(v) for v in rows.higher_is_better if not _missing(v)}
    if len(dirs) > 1:
        raise HarnessError(f"metric {rows.key.iloc[0]!r} is marked both higher- and lower-is-better")
    ns = {int(n) for n, v in zip(rows.n, rows.value) if not _missing(v)}
    return MetricColumn(key=rows.key.iloc[0], benchmark=rows.benchmark.iloc[0],
                        metric=rows.metric.iloc[0], higher_is_better=dirs.pop() if dirs else None,
                        n=ns.pop() if len(ns) == 1 else None)


def _resolve(name: str, columns: list[MetricColumn]) -> MetricColumn:
    """A metric by its column key, or by its bare name when only one benchmark reports it."""
    hits = [c for c in columns if c.key == name] or [c for c in columns if c.metric == name]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise HarnessError(f"metric {name!r} is reported by several benchmarks; use one of: "
                           f"{', '.join(c.key for c in hits)}")
    raise HarnessError(f"unknown metric {name!r}; available: {', '.join(c.key for c in columns)}")


def _legend(columns: list[MetricColumn], sort_col: MetricColumn) -> list[str]:
    word = {True: "↑ higher is better", False: "↓ lower is better", None: "direction not declared"}
    return [
        "Cells: value [CI low, CI high]; (n=…) in the header when every row has the same n, "
        f"else in the cell; {MISSING} = no value.",
        "Better: " + "; ".join(f"{c.key} {word[c.higher_is_better] if c.higher_is_better is not None else _direction(c.metric)}"
                               for c in columns) + ".",
        f"Sorted by {sort_col.key}, best first.",
    ]


def _reasons(df: pd.DataFrame, columns: list[MetricColumn]) -> list[str]:
    """Why a column has no value (e.g. no reference run), from the result files, once per reason:
    an empty column with no word of why reads as a bug."""
    if "reason" not in df.columns:
        return []
    out: list[str] = []
    for c in columns:
        rows = df[(df.key == c.key) & df.value.isna()]
        for reason in dict.fromkeys(r for r in rows.reason if isinstance(r, str) and r.strip()):
            out.append(f"{c.key} {MISSING}: {reason}.")
    return out


def _direction(metric_id: str) -> str:
    """A direction-less metric's own words (`best at 0.5`) when this install knows the metric;
    result files from elsewhere still render, as "direction not declared"."""
    from harness.catalog import METRICS

    name = metric_id.split("@", 1)[0].split("[", 1)[0]
    if ":" in name or name not in METRICS:
        return "direction not declared"
    try:
        return getattr(METRICS.get(name), "direction", lambda: "")() or "direction not declared"
    except Exception:  # a plug-in that fails to import must not stop a leaderboard built from files
        return "direction not declared"


def _missing(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _num(v: object) -> float:
    return math.nan if _missing(v) else float(v)


def _short(value: object, n: int | None) -> str:
    """Hex runs cut to n characters (`sha256:0123abcd…` -> `sha256:0123abcd`); long text capped."""
    s = str(value) if n is None else re.sub(rf"\b([0-9a-fA-F]{{{n}}})[0-9a-fA-F]+\b", r"\1", str(value))
    return s if len(s) <= 64 else s[:63] + "…"


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


def render_report_markdown(full: Leaderboard, tables: list[Leaderboard]) -> str:
    """The tables a reader sees (as in the terminal), each with its legend, then one provenance
    line per row of the full leaderboard; every metric is in the CSV."""
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(markdown_escape(c) for c in cells) + " |"

    lines = ["# Leaderboard", "",
             f"{len(tables)} tables of the {len(full.columns)} metrics; every metric, with CIs, n and provenance, "
             "is in leaderboard.csv.", ""]
    for lb in tables:
        align = ["---", "---", *("---:" for _ in lb.columns)]
        lines += [f"## {markdown_escape(lb.title)}", "", row(lb.headers), "| " + " | ".join(align) + " |"]
        lines += [row(list(r)) for r in lb.table.itertuples(index=False)]
        lines += ["", *(f"{markdown_escape(line)}  " for line in lb.legend), ""]
    lines += ["## Provenance", "", "One line per row of the full leaderboard (leaderboard.csv), in its order:", ""]
    lines += [f"{i}. {markdown_escape(note)}" for i, note in enumerate(full.footnotes, 1)]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(lb: Leaderboard) -> str:
    """Title, table, provenance footnotes (one per row, in table order), legend."""
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(markdown_escape(c) for c in cells) + " |"

    align = ["---", "---", *("---:" for _ in lb.columns)]
    lines = [f"# {markdown_escape(lb.title)}", "", row(lb.headers), "| " + " | ".join(align) + " |"]
    lines += [row(list(r)) for r in lb.table.itertuples(index=False)]
    lines += ["", "Provenance (one line per row, in table order):", ""]
    lines += [f"{i}. {markdown_escape(note)}" for i, note in enumerate(lb.footnotes, 1)]
    lines += ["", *(f"{markdown_escape(line)}  " for line in lb.legend)]
    return "\n".join(lines).rstrip() + "\n"


def render_csv(lb: Leaderboard) -> str:
    """Numbers stay numbers; text cells and headers are defused against formula injection, and
    their control characters (ESC, OSC-8 links, line breaks) become spaces as in Markdown."""
    out = lb.numeric.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):  # object or (pandas 3) str dtype
            out[col] = out[col].astype(object).map(_csv_text)
    out.columns = [_csv_text(c) for c in out.columns]
    return out.to_csv(index=False)


def _csv_text(value: object) -> object:
    return csv_safe(one_line(value)) if isinstance(value, str) else value


def write_leaderboard(lb: Leaderboard, out_dir: str | Path, tables: list[Leaderboard] | None = None,
                      breakdowns: dict[str, str] | None = None) -> dict[str, Path]:
    """Write leaderboard.md (the `tables` when given, else `lb` as one table), leaderboard.csv
    (all of `lb`) and each `breakdowns` CSV (benchmark -> `breakdown_csv` text, as
    `leaderboard_<benchmark>.csv`) atomically; returns {"markdown": …, "csv": …, <benchmark>: …}."""
    out = Path(out_dir)
    paths = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv"}
    with exclusive(out / ".leaderboard.lock"):  # runs finishing together write one after the other
        for stale in out.glob(".leaderboard*.tmp"):  # left by a writer that was killed
            stale.unlink(missing_ok=True)
        atomic_write_text(paths["markdown"], render_report_markdown(lb, tables) if tables else render_markdown(lb))
        atomic_write_text(paths["csv"], render_csv(lb))
        for name, text in (breakdowns or {}).items():
            if text:
                paths[name] = out / f"leaderboard_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.csv"
                atomic_write_text(paths[name], text)
    return paths


def render_rich(lb: Leaderboard) -> Table:
    """A terminal table; untrusted text is flattened to one line and its markup escaped."""
    def text(s: object) -> str:
        return rich_escape(one_line(s))

    t = Table(title=text(lb.title), caption=text(" ".join(lb.legend)))
    for i, h in enumerate(lb.headers):
        t.add_column(text(h), justify="left" if i < 2 else "right", no_wrap=i < 2)
    for r in lb.table.itertuples(index=False):
        t.add_row(*(text(c) for c in r))
    return t
