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
CSV, terminal: `reports.render`), so `Leaderboard` itself holds the raw strings. Which tables
a reader sees is `reports.tables`'s choice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.results import find_summaries, read_summary

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
