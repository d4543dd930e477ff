"""`report.html`: one self-contained page from the result files alone (leaderboard, plots, samples).

Why one file with nothing outside it: a report is mailed, attached to a paper's artefacts and
opened from disk, often offline; a page that fetched a script from a CDN would break there
and would tell a third party who read it. So the page makes no network request of any kind,
and its Content-Security-Policy says so to the browser: no source but the page's own script
and style (pinned by hash), images only as `data:` URIs.

Everything in the page that came from a result file (model outputs, prompts, ids, metric
names made from dataset categories) is data, never markup: the leaderboard and samples travel
as one JSON block whose `<`, `>` and `&` are `\\u`-escaped (so `</script>` inside a generation
cannot end it) and `report.js` puts them into the page with `textContent` only; the plots are
SVG drawn here with every label through `html_escape`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.io import atomic_write_text
from harness.results import SAMPLES_FILE, find_summaries, read_samples, read_summary, report_layouts
from harness.reports.escape import html_escape, one_line
from harness.reports.leaderboard import Leaderboard, build_leaderboard, load_results
from harness.reports.tables import report_tables
from harness.reports.svg import Estimate, Point, bar_chart, scatter

REPORT_FILE = "report.html"
# Items per split and cell in the sample viewer: the page stays small (a full TOFU grid would
# be megabytes); every sample stays in samples.jsonl and `harness.results.load_samples`.
MAX_SAMPLES = 500
_ASSETS = Path(__file__).resolve().parent
_ARROW = {True: "↑", False: "↓"}
_BREAKDOWN = re.compile(r"^asr@[^\[:]+\[([A-Za-z_]+)=(.+)\]$")  # asr@<split>[<field>=<category>]
_HIDDEN_PREFIXES = ("relearn_recovery:", "restoration_rate:", "in_context_recovery:")
_DISPLACEMENT = ("likelihood_displacement:delta_chosen", "likelihood_displacement:delta_rejected",
                 "likelihood_displacement:margin_change")
_PROVENANCE = ("model_identity", "adapter_hash", "base_model", "model_path", "dataset_source", "dataset_hash",
               "judge", "git_commit", "config_hash", "seed", "method_hparams", "benchmark_options", "reference",
               "harness_version", "package_versions", "device", "created_at")


def write_report(results_dir: str | Path, out: str | Path | None = None, max_samples: int = MAX_SAMPLES) -> Path:
    """Write `report.html` (into the results dir unless `out` is given) atomically; its path."""
    path = Path(out) if out is not None else Path(results_dir) / REPORT_FILE
    atomic_write_text(path, render_report(results_dir, max_samples))
    return path


def render_report(results_dir: str | Path, max_samples: int = MAX_SAMPLES) -> str:
    """The page's HTML, built from every summary.json and samples.jsonl under `results_dir`."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise HarnessError(f"results directory not found: {results_dir}")
    df = load_results(results_dir)
    _, tables = report_tables(df, report_layouts(results_dir))
    if max_samples < 1:
        raise HarnessError(f"the number of samples to show must be at least 1, not {max_samples}")
    cells, samples = _cells_and_samples(results_dir, max_samples)
    roles = {key: c["role"] for key, c in _keyed(cells).items()}
    data = {
        "tables": [_table(lb, "view", roles) for lb in tables]
                  + [_table(build_leaderboard(df, benchmark=b), "all", roles, f"{b}: every metric")
                     for b in sorted(df.benchmark.unique())],
        "cells": cells,
        "samples": samples["benchmarks"],
        "strings": samples["strings"],
    }
    plots = _plots(df, roles) + _grids(results_dir)
    return _page(str(results_dir.resolve().name), data, plots)


GRID_FILE = "grid.png"  # a text-to-image cell's before/after picture grid (harness/grids.py)
MAX_GRID_BYTES = 2_000_000
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _grids(results_dir: Path) -> list[tuple[str, str]]:
    """The before/after image grids saved next to the cells' results, inlined as data: URIs
    (the page's policy allows no other image source); a file that is not a PNG or is larger
    than MAX_GRID_BYTES is left out."""
    out = []
    for path in find_summaries(results_dir):
        grid = path.parent / GRID_FILE
        if not grid.is_file() or grid.stat().st_size > MAX_GRID_BYTES:
            continue
        data = grid.read_bytes()
        if not data.startswith(_PNG_MAGIC):
            continue
        s = read_summary(path)
        caption = html_escape(one_line(f"{s.model} · {s.method} · {s.benchmark}"))
        img = base64.b64encode(data).decode("ascii")
        out.append(("Image grids: each prompt's generations before (left) and after (right)",
                    f'<img src="data:image/png;base64,{img}" alt="{caption}"><figcaption>{caption}</figcaption>'))
    return out


# --- data -----------------------------------------------------------------------------------------

def _keyed(cells: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(c["model"], c["method"], c["benchmark"]): c for c in cells}


def _cells_and_samples(results_dir: Path, max_samples: int) -> tuple[list[dict], dict[str, Any]]:
    """One entry per result cell (its provenance and role), and the samples of every cell in a
    compact form: per benchmark one list of items (split, id, prompt, reference); per cell the
    generation, the notes and the per-sample values of each item; every text interned once."""
    strings: list[str] = []
    index: dict[str, int] = {}

    def intern(s: str | None) -> int:
        if s is None:
            return -1
        if s not in index:
            index[s] = len(strings)
            strings.append(s)
        return index[s]

    summaries = [(p, read_summary(p)) for p in find_summaries(results_dir)]
    references = defaultdict(set)
    for _, s in summaries:
        if s.provenance.reference and s.provenance.reference.get("model"):
            references[s.benchmark].add(str(s.provenance.reference["model"]))
    cells, benchmarks = [], {}
    for path, s in summaries:
        role = "reference" if s.model in references[s.benchmark] else ("original" if s.method == "none" else "")
        prov = s.provenance.model_dump()
        cell = {"model": s.model, "method": s.method, "benchmark": s.benchmark, "role": role,
                "path": str(path.parent.relative_to(results_dir)),
                "prov": {k: _prov_text(prov.get(k)) for k in _PROVENANCE}}
        bench = benchmarks.setdefault(s.benchmark, {"items": [], "cells": {}, "_pos": {}})
        samples_path = path.parent / SAMPLES_FILE
        if samples_path.is_file():
            gen: dict[int, int] = {}
            notes: dict[str, dict[int, int]] = defaultdict(dict)
            values: dict[str, dict[int, float | None]] = defaultdict(dict)
            shown: dict[str, int] = defaultdict(int)
            for r in read_samples(samples_path):
                shown[r.split] += 1
                if shown[r.split] > max_samples:  # the same first items of every cell: they line up
                    continue
                key = (r.split, r.item_id)
                if key not in bench["_pos"]:
                    bench["_pos"][key] = len(bench["items"])
                    bench["items"].append([intern(r.split), intern(r.item_id), intern(r.prompt), intern(r.reference)])
                i = bench["_pos"][key]
                if r.generation is not None:
                    gen[i] = intern(r.generation)
                for metric, note in r.notes.items():
                    notes[metric][i] = intern(note)
                for metric, v in r.values.items():
                    values[metric][i] = _round(v)
            cell["samples"] = len(cells)
            cell["omitted"] = {split: n - max_samples for split, n in shown.items() if n > max_samples}
            bench["cells"][str(len(cells))] = {
                "gen": _pairs(gen), "notes": {m: _pairs(n) for m, n in notes.items()},
                "values": {m: _pairs(v) for m, v in values.items()},
            }
        cells.append(cell)
    for bench in benchmarks.values():
        del bench["_pos"]
    return cells, {"benchmarks": benchmarks, "strings": strings}


def _pairs(d: dict[int, Any]) -> list[list]:
    """A sparse column as [runs of item indices, values]: most metrics score one split of a
    benchmark, so its items are a few contiguous runs, each written [first, count]."""
    keys = sorted(d)
    runs: list[list[int]] = []
    for k in keys:
        if runs and runs[-1][0] + runs[-1][1] == k:
            runs[-1][1] += 1
        else:
            runs.append([k, 1])
    return [runs, [d[k] for k in keys]]


def _round(v: float | None) -> float | None:
    """Four significant digits: enough to read, a third of the bytes of a full float."""
    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.4g}")


def _prov_text(v: Any) -> str | None:
    if v is None or v == "" or v == {}:
        return None
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def _table(lb: Leaderboard, kind: str, roles: dict, title: str | None = None) -> dict:
    """A leaderboard table as data: columns with direction, rows with [value, lo, hi, n] cells."""
    benchmark = lb.columns[0].benchmark
    rows = []
    for r in lb.numeric.to_dict("records"):
        cells = []
        for c in lb.columns:
            n = r.get(f"{c.key}_n")
            cells.append([_num(r[c.key]), _num(r[f"{c.key}_ci_low"]), _num(r[f"{c.key}_ci_high"]),
                          None if n is None or n is pd.NA else int(n)])
        rows.append({"model": r["model"], "method": r["method"], "benchmark": benchmark,
                     "role": roles.get((r["model"], r["method"], benchmark), ""), "cells": cells})
    return {"kind": kind, "title": title or lb.title, "legend": lb.legend, "sort": lb.sort_by,
            "columns": [{"key": c.metric if c.key == f"{c.benchmark}/{c.metric}" else c.key,
                         "dir": {True: 1, False: -1}.get(c.higher_is_better, 0)} for c in lb.columns],
            "rows": rows}


def _num(v: Any) -> float | None:
    if v is None or v is pd.NA:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# --- plots ----------------------------------------------------------------------------------------

def _plots(df: pd.DataFrame, roles: dict) -> list[tuple[str, str]]:
    """(section, svg) for each plot the results support, per benchmark."""
    out: list[tuple[str, str]] = []
    for benchmark in sorted(df.benchmark.unique()):
        rows = df[df.benchmark == benchmark]
        est = {(r.model, r.method, r.metric): Estimate(_num(r.value), _num(r.ci_low), _num(r.ci_high), int(r.n))
               for r in rows.itertuples(index=False)}
        direction = {r.metric: r.higher_is_better for r in rows.itertuples(index=False)
                     if r.higher_is_better is not None and not pd.isna(r.higher_is_better)}
        metrics = list(dict.fromkeys(rows.metric))
        pairs = sorted(set(zip(rows.model, rows.method)), key=lambda p: (p[0], p[1] != "none", p[1]))
        multi = len({m for m, _ in pairs}) > 1
        names = {p: (f"{p[0]} / {p[1]}" if multi else p[1]) for p in pairs}

        def label(metric: str) -> str:
            arrow = direction.get(metric)
            return metric + (f" {_ARROW[bool(arrow)]}" if arrow is not None else "")

        def bars(title: str, groups: list[tuple[str, str]], y_label: str) -> str | None:
            data = {(g, names[p]): est[(*p, m)] for g, m in groups for p in pairs if (*p, m) in est}
            series = [names[p] for p in pairs if any((*p, m) in est and est[(*p, m)].ok for _, m in groups)]
            return bar_chart(title, [g for g, _ in groups], series, data, y_label) if series else None

        for x, y in _tradeoffs(metrics):
            points = [Point(names[p], est[(*p, x)], est[(*p, y)], roles.get((*p, benchmark)) == "reference")
                      for p in pairs if (*p, x) in est and (*p, y) in est]
            if sum(pt.x.ok and pt.y.ok for pt in points) >= 1:
                out.append(("trade-off", scatter(f"{benchmark}: {x} vs {y}", label(x), label(y), points,
                                                 log_x=x == "forget_quality")))
        families = _asr_breakdown(metrics)
        if families:
            overall = [(f"all ({m})", m) for m in metrics if m.startswith("asr@") and "[" not in m and ":" not in m]
            refusal = [(f"over-refusal ({m})", m) for m in metrics
                       if m.startswith("refusal_rate@") and "[" not in m and ":" not in m]
            field = _BREAKDOWN.match(families[0][1]).group(1).replace("_", " ")  # type: ignore[union-attr]
            svg = bars(f"{benchmark}: ASR by {field}, and over-refusal",
                       families + overall + refusal, "rate (ASR ↓, over-refusal ↓)")
            if svg:
                out.append(("safety", svg))
        hidden = [(m, m) for m in metrics if m.startswith(_HIDDEN_PREFIXES) and "[" not in m.split(":", 1)[0]]
        if hidden:
            svg = bars(f"{benchmark}: deleted or hidden? (what comes back; lower is better)", hidden, "recovery")
            if svg:
                out.append(("deleted or hidden?", svg))
        shown = [(m.split(":", 1)[1], m) for m in _DISPLACEMENT if m in metrics]
        if shown:
            svg = bars(f"{benchmark}: likelihood displacement on the preference pairs", shown,
                       "change in log-likelihood (nats)")
            if svg:
                out.append(("likelihood displacement", svg))
    return out


def _asr_breakdown(metrics: list[str]) -> list[tuple[str, str]]:
    """(category, metric id) of ASR by attack family, else by the first category field the
    benchmark breaks ASR down by (a dataset's own categories, e.g. JailbreakBench's)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for m in metrics:
        hit = _BREAKDOWN.match(m)
        if hit:
            found.setdefault(hit.group(1), []).append((hit.group(2), m))
    return found.get("attack_family") or next(iter(found.values()), [])


def _tradeoffs(metrics: list[str]) -> list[tuple[str, str]]:
    """(x, y) metric pairs for the forget-vs-utility picture: a forget-set score against model
    utility (else a retain-set score), and the TOFU picture, forget quality against utility."""
    plain = [m for m in metrics if ":" not in m and "[" not in m]
    forget = [m for m in plain if m.endswith("@forget") or "@forget" in m]
    utility = ["model_utility"] if "model_utility" in plain else [m for m in plain if m.endswith("@retain")]
    pairs = []
    if forget and utility:
        x = next((m for m in forget if m.startswith("rouge_l_recall")), forget[0])
        pairs.append((x, utility[0]))
    if "forget_quality" in plain and "model_utility" in plain:
        pairs.append(("forget_quality", "model_utility"))
    return pairs


# --- the page -------------------------------------------------------------------------------------

def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> block or open a comment or CDATA section in it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _page(name: str, data: dict, plots: list[tuple[str, str]]) -> str:
    script = (_ASSETS / "report.js").read_text(encoding="utf-8")
    style = (_ASSETS / "report.css").read_text(encoding="utf-8")
    csp = (f"default-src 'none'; script-src '{_csp_hash(script)}'; style-src '{_csp_hash(style)}'; "
           "img-src data:; font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")
    sections: dict[str, list[str]] = defaultdict(list)
    for section, svg in plots:
        sections[section].append(f'<figure>{svg}</figure>')
    plot_html = "".join(f'<h3>{html_escape(s)}</h3><div class="plots">{"".join(f)}</div>' for s, f in sections.items())
    title = html_escape(one_line(f"Results: {name}"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'  # constants and base64 only
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{style}</style></head><body>"
        f"<header><h1>{title}</h1><p>Built from the result files alone by <code>harness report</code>. "
        "Each value is shown as value [95% CI] with its n; ↑ higher is better, ↓ lower is better. "
        "Click a column to sort, a row's (i) for its provenance.</p>"
        '<nav><a href="#leaderboard">Leaderboard</a> · <a href="#plots">Plots</a> · <a href="#samples">Samples</a></nav>'
        "</header>"
        '<section id="leaderboard"><h2>Leaderboard</h2>'
        '<div class="controls"><label>Rows: <input id="row-filter" type="search" placeholder="filter model / method"></label> '
        '<label>Columns: <input id="col-filter" type="search" placeholder="filter metrics"></label></div>'
        '<div id="tables"></div></section>'
        f'<section id="plots"><h2>Plots</h2>{plot_html or "<p>No plottable metrics in these results.</p>"}</section>'
        '<section id="samples"><h2>Samples</h2>'
        '<div class="controls"><label>Cell: <select id="sample-cell"></select></label> '
        '<label>beside: <select id="sample-compare"></select></label> '
        '<label>Search: <input id="sample-search" type="search" placeholder="id, prompt, answer, verdict"></label> '
        '<span id="sample-count"></span></div>'
        '<div id="sample-detail" hidden></div><div id="sample-list"></div></section>'
        f'<script type="application/json" id="report-data">{json_for_script(data)}</script>'
        f"<script>{script}</script></body></html>\n"
    )
