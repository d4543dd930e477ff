"""Leaderboards rendered: Markdown, CSV and the terminal, written atomically.

Every text cell read from result files is untrusted and is escaped here, when rendered
(`reports.escape`): Markdown escaping, CSV formula defusing, Rich markup escaping.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from rich.markup import escape as rich_escape
from rich.table import Table

from harness.io import atomic_write_text, exclusive
from harness.reports.escape import csv_safe, markdown_escape, one_line
from harness.reports.leaderboard import Leaderboard

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
