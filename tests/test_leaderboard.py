"""The leaderboard is rebuilt from result files alone, sorts by direction, and escapes its input."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.results import MetricValue, Provenance, RunSummary, cell_dir, write_cell
from harness.reports.escape import csv_safe, markdown_escape
from harness.reports.leaderboard import build_leaderboard, format_cell, format_number, load_results
from harness.reports.render import render_markdown, render_rich, write_leaderboard

# (model, method) -> {metric: (value, ci_low, ci_high, n)}. forget_quality: higher is better;
# extraction_strength: lower is better. The two orders differ, and differ from each other reversed.
INPUTS = {
    ("tiny-facts", "none"): {"forget_quality": (0.1, 0.05, 0.2, 20),
                             "extraction_strength": (0.8, 0.7, 0.9, 20)},
    ("tiny-facts", "grad-ascent"): {"forget_quality": (0.41234, 0.35, 0.4706, 20),
                                    "extraction_strength": (0.2, 0.15, 0.25, 18)},
    ("tiny-facts-retain", "none"): {"forget_quality": (0.95, 0.9, 0.99, 20),
                                    "extraction_strength": (0.4, 0.35, 0.45, 20)},
}
HIGHER = {"forget_quality": True, "extraction_strength": False}


def _summary(model: str, method: str, metrics: dict, benchmark: str = "fictitious_facts",
             seed: int = 0) -> RunSummary:
    return RunSummary(
        model=model, method=method, benchmark=benchmark,
        metrics={k: MetricValue(value=v, ci_low=lo, ci_high=hi, n=n, higher_is_better=HIGHER.get(k))
                 for k, (v, lo, hi, n) in metrics.items()},
        provenance=Provenance(
            config_hash="c0ffee" * 10, git_commit="1234567abcdef" * 3, harness_version="0.1.0",
            seed=seed, model_identity="sha256:" + "ab" * 32, dataset_hash="d1" * 32,
        ),
    )


def _write(root: Path, inputs: dict = INPUTS, benchmark: str = "fictitious_facts") -> Path:
    for (model, method), metrics in inputs.items():
        write_cell(cell_dir(root, model, method, benchmark), _summary(model, method, metrics, benchmark), [])
    return root


def _table_lines(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def _unescaped_pipes(line: str) -> int:
    count, escaped = 0, False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            count += 1
    return count


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return _write(tmp_path / "results")


def test_load_results_one_row_per_metric(results: Path) -> None:
    df = load_results(results)
    assert len(df) == 6
    assert set(df.columns) >= {"model", "method", "benchmark", "metric", "value", "ci_low", "ci_high", "n",
                               "higher_is_better", "config_hash", "git_commit", "seed",
                               "model_identity", "dataset_hash", "path"}
    row = df[(df.model == "tiny-facts") & (df.method == "grad-ascent") & (df.metric == "forget_quality")]
    assert row[["value", "ci_low", "ci_high", "n"]].iloc[0].tolist() == [0.41234, 0.35, 0.4706, 20]


def test_markdown_has_one_row_per_model_method(results: Path) -> None:
    md = render_markdown(build_leaderboard(load_results(results)))
    lines = _table_lines(md)
    assert len(lines) == 2 + len(INPUTS)  # header, separator, rows
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]) for line in lines[2:]}
    assert rows == {(markdown_escape(m), markdown_escape(me)) for m, me in INPUTS}
    assert md.startswith("# Leaderboard")
    assert "forget_quality ↑ (n=20)" in lines[0].replace("\\_", "_")
    assert "Provenance" in md and "config c0ffeec0" in md


def test_sort_respects_direction(results: Path) -> None:
    df = load_results(results)
    by_fq = build_leaderboard(df).table  # default: first metric column, higher is better
    expected = sorted(INPUTS, key=lambda k: -INPUTS[k]["forget_quality"][0])
    assert list(zip(by_fq.model, by_fq.method)) == expected
    by_es = build_leaderboard(df, sort_by="extraction_strength").table  # lower is better
    expected = sorted(INPUTS, key=lambda k: INPUTS[k]["extraction_strength"][0])
    assert list(zip(by_es.model, by_es.method)) == expected


def test_cells_show_ci_from_known_numbers(results: Path) -> None:
    lb = build_leaderboard(load_results(results))
    t = lb.table.set_index(["model", "method"])
    assert t.loc[("tiny-facts", "grad-ascent"), "forget_quality"] == "0.412 [0.350, 0.471]"
    assert t.loc[("tiny-facts", "none"), "forget_quality"] == "0.100 [0.050, 0.200]"
    # n differs between rows for extraction_strength: it goes into the cell, not the header
    assert t.loc[("tiny-facts", "grad-ascent"), "extraction_strength"] == "0.200 [0.150, 0.250] (n=18)"
    assert lb.headers == ["model", "method", "forget_quality ↑ (n=20)", "extraction_strength ↓"]
    assert "0.412 \\[0.350, 0.471\\]" in render_markdown(lb)
    assert len(lb.footnotes) == 3 and lb.footnotes[0].startswith("tiny-facts-retain / none:")


def test_format_edge_cases() -> None:
    assert format_cell(None, 0.1, 0.2) == "—"
    assert format_cell(0.5, None, None) == "0.500"
    assert format_number(1.234e-5) == "1.23e-05"
    assert format_number(0.0) == "0.000"


def test_csv_numbers_round_trip(results: Path, tmp_path: Path) -> None:
    paths = write_leaderboard(build_leaderboard(load_results(results)), tmp_path / "out")
    assert paths["markdown"].read_text().startswith("# Leaderboard")
    out = pd.read_csv(paths["csv"])
    assert len(out) == len(INPUTS)
    for r in out.itertuples(index=False):
        for metric, (v, lo, hi, n) in INPUTS[(r.model, r.method)].items():
            got = out.loc[(out.model == r.model) & (out.method == r.method)].iloc[0]
            assert (got[metric], got[f"{metric}_ci_low"], got[f"{metric}_ci_high"], got[f"{metric}_n"]) \
                == (v, lo, hi, n)
    assert {"config_hash", "git_commit", "seed", "model_identity", "dataset_hash"} <= set(out.columns)
    assert out.seed.tolist() == [0, 0, 0]


def test_injected_names_are_escaped(tmp_path: Path) -> None:
    evil = "evil|name\n<script>alert(1)</script>"
    method = "`x`*_[click](http://e.example)\\|"
    root = _write(tmp_path / "r", {**INPUTS, (evil, method): INPUTS[("tiny-facts", "none")]})
    lb = build_leaderboard(load_results(root))
    assert evil in set(lb.table.model)  # the leaderboard keeps raw text; rendering escapes it
    md = render_markdown(lb)
    lines = _table_lines(md)
    assert len(lines) == 2 + len(INPUTS) + 1  # the newline did not split a row
    assert len({_unescaped_pipes(line) for line in lines}) == 1
    assert _unescaped_pipes(lines[0]) == len(lb.headers) + 1
    assert "<script>" not in md and "[click](" not in md and "`x`" not in md
    assert "evil\\|name \\<script\\>" in md and "\\[click\\](http" in md


def test_csv_formula_injection_is_neutralised(tmp_path: Path) -> None:
    root = _write(tmp_path / "r", {("=cmd()", "@SUM(A1)"): INPUTS[("tiny-facts", "none")]})
    paths = write_leaderboard(build_leaderboard(load_results(root)), tmp_path / "out")
    rows = list(csv.reader(io.StringIO(paths["csv"].read_text())))
    assert rows[1][:2] == ["'=cmd()", "'@SUM(A1)"]
    for cell in (c for row in rows for c in row):
        if cell[:1] in ("=", "+", "-", "@"):
            float(cell)  # only plain numbers may start like a formula
    assert csv_safe("-0.5") == "-0.5" and csv_safe("-1+2") == "'-1+2" and csv_safe(1.5) == 1.5


def test_rich_table_escapes_markup(tmp_path: Path) -> None:
    root = _write(tmp_path / "r", {("[bold red]x[/]", "none"): INPUTS[("tiny-facts", "none")]})
    console = Console(record=True, width=200, color_system=None)
    console.print(render_rich(build_leaderboard(load_results(root))))
    assert "[bold red]x[/]" in console.export_text()


def test_several_benchmarks_prefix_columns(results: Path) -> None:
    _write(results, {("tiny-facts", "none"): {"forget_quality": (0.3, None, None, 5)}}, benchmark="other")
    df = load_results(results)
    lb = build_leaderboard(df)
    assert [c.key for c in lb.columns] == ["fictitious_facts/forget_quality",
                                           "fictitious_facts/extraction_strength", "other/forget_quality"]
    with pytest.raises(HarnessError, match="several benchmarks"):
        build_leaderboard(df, sort_by="forget_quality")
    one = build_leaderboard(df, benchmark="other")
    assert [c.key for c in one.columns] == ["forget_quality"]
    assert one.table.forget_quality.tolist() == ["0.300"]


def test_unknown_sort_metric_raises(results: Path) -> None:
    with pytest.raises(HarnessError, match="unknown metric 'nope'.*forget_quality.*extraction_strength"):
        build_leaderboard(load_results(results), sort_by="nope")


def test_empty_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no result summaries under"):
        load_results(tmp_path)


def test_tables_come_from_the_result_files_alone(tmp_path: Path) -> None:
    """A benchmark no registry knows: its headline and views come from the layout in its summaries."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.results import ReportLayout, report_layouts

    root = tmp_path / "results"
    for (model, method), metrics in INPUTS.items():
        s = _summary(model, method, metrics, "someone-elses-benchmark")
        s.layout = ReportLayout(headline=["extraction_strength"], views={"Quality only": ["forget_*"]})
        write_cell(cell_dir(root, model, method, "someone-elses-benchmark"), s, [])
    layout = report_layouts(root)["someone-elses-benchmark"]
    assert layout.headline == ["extraction_strength"] and layout.views == {"Quality only": ["forget_*"]}
    out = CliRunner().invoke(app, ["leaderboard", str(root)], env={"COLUMNS": "250"}).output
    headline, _, view = out.partition("Quality only")
    assert "extraction_strength" in headline and "forget_quality" not in headline
    assert view and "forget_quality" in view and "extraction_strength" not in view


def test_csv_headers_and_cells_carry_no_control_characters(tmp_path: Path) -> None:
    """Category values become metric names, hence CSV headers: ESC, OSC-8 links and line
    breaks in them are neutralised as in Markdown (issue 18)."""
    osc8 = "asr[category=\x1b]8;;http://evil\x07click\x1b]8;;\x07]@all"
    bad = {osc8: (0.5, None, None, 4), "asr[category=a\nb\r\x1b[31mred]@all": (0.25, None, None, 4),
           "asr[category=\u2028x\u202e]@all": (0.1, None, None, 4)}
    root = _write(tmp_path / "r", {("model\x1b[2J", "none\nx"): bad})
    paths = write_leaderboard(build_leaderboard(load_results(root)), tmp_path / "out")
    text = paths["csv"].read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert len(text.splitlines()) == len(rows) == 2  # no header or cell spans lines
    for cell in rows[0] + rows[1]:
        assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029\u202e" for ch in cell), cell
    assert any("http://evil" in h for h in rows[0])  # the text stays, inert
    assert "model [2J" in rows[1]


# --- a method that did nothing -----------------------------------------------------------------
NOTHING = {
    ("tiny-facts", "none"): {"probability@forget": (0.90, 0.85, 0.95, 20), "exact_match_recall@forget": (0.8, 0.7, 0.9, 20),
                             "probability@retain": (0.9, 0.85, 0.95, 20)},
    # both forget metrics inside the original's CIs (retain ones do not matter): flagged
    ("tiny-facts", "idle"): {"probability@forget": (0.88, 0.8, 0.95, 20), "exact_match_recall@forget": (0.75, 0.6, 0.85, 20),
                             "probability@retain": (0.5, 0.4, 0.6, 20)},
    # one forget metric outside: not flagged
    ("tiny-facts", "npo"): {"probability@forget": (0.30, 0.2, 0.4, 20), "exact_match_recall@forget": (0.75, 0.6, 0.85, 20),
                            "probability@retain": (0.9, 0.85, 0.95, 20)},
}


def test_rows_whose_forget_metrics_stay_within_the_originals_cis_are_flagged(tmp_path):
    lb = build_leaderboard(load_results(_write(tmp_path, NOTHING)), sort_by="probability@retain")
    flags = dict(zip(lb.numeric.method, lb.numeric.no_effect))
    assert flags == {"none": False, "idle": True, "npo": False}
    methods = list(lb.table.method)
    assert "idle (did nothing?)" in methods and "npo" in methods and "none" in methods
    note = next(line for line in lb.legend if line.startswith("(did nothing?)"))
    assert "tiny-facts / idle" in note and "exact_match_recall@forget" in note and "probability@forget" in note
    # the flag reads every forget metric, including those the table does not show
    narrow = build_leaderboard(load_results(tmp_path), metrics=["probability@retain"])
    assert dict(zip(narrow.numeric.method, narrow.numeric.no_effect))["idle"] is True
    assert "no_effect" in render_csv_header(lb)


def render_csv_header(lb) -> str:
    from harness.reports.render import render_csv

    return render_csv(lb).splitlines()[0]


def test_normalised_avqi_is_stored_with_its_model_set(tmp_path):
    from harness.normalised import model_set_id, store_normalised_avqi
    from harness.results import read_summary

    raw = {("m", "none"): 1.0, ("m", "grace"): 3.0, ("r", "none"): 2.0}
    _write(tmp_path, {k: {"avqi@adversarial": (v, v - 0.1, v + 0.1, 10), "asr@adversarial": (5.0, 4, 6, 10)}
                      for k, v in raw.items()}, benchmark="probes")
    _write(tmp_path, {("m", "none"): {"avqi@adversarial": (9.0, 8, 10, 10)}}, benchmark="other")  # another set
    assert store_normalised_avqi(tmp_path, "probes") == 3
    members = ["m/grace", "m/none", "r/none"]
    got = {}
    for (model, method), v in raw.items():
        s = read_summary(cell_dir(tmp_path, model, method, "probes") / "summary.json")
        m = s.metrics["avqi_normalised@adversarial"]
        assert m.details["model_set"] == model_set_id(members) and m.details["members"] == members
        assert m.details["raw"] == v and m.higher_is_better is False
        got[(model, method)] = m.value
    assert got == pytest.approx({("m", "none"): 0.0, ("m", "grace"): 100 * 2 / (2 + 1e-8), ("r", "none"): 50 * 2 / (2 + 1e-8)})
    other = read_summary(cell_dir(tmp_path, "m", "none", "other") / "summary.json")
    assert "avqi_normalised@adversarial" not in other.metrics  # a single member: nothing to normalise over
    # the leaderboard recomputes over its own rows (here one benchmark of two), not the stored set
    df = load_results(tmp_path)
    rows = df[(df.metric == "avqi_normalised@adversarial") & (df.benchmark == "probes")]
    assert len(rows) == 3 and sorted(rows.value.round(6)) == pytest.approx([0.0, 50.0, 100.0], abs=1e-4)


def test_a_breakdown_becomes_rows_and_the_authors_columns(tmp_path: Path) -> None:
    """UnLOK-VQA's layout (rows_by "attack"): `asr[attack=bb]` becomes column `asr` of row
    "<defence> / bb", per-cell values repeat on each row, and leaderboard_<bench>.csv carries
    result_agg.csv's column names with the numbers unchanged."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.results import ReportLayout

    root = tmp_path / "results"
    cells = {
        ("m", "fact-erasure"): {"asr[attack=bb]": (0.25, 0.1, 0.4, 8), "asr_pre[attack=bb]": (0.875, 0.6, 1.0, 8),
                                "asr[attack=hp]": (0.5, 0.2, 0.8, 8), "asr_pre[attack=hp]": (1.0, 1.0, 1.0, 8),
                                "delta_accuracy": (0.125, 0.0, 0.3, 8)},
        ("m", "empty-response"): {"asr[attack=bb]": (0.125, 0.0, 0.3, 8), "asr_pre[attack=bb]": (0.875, 0.6, 1.0, 8),
                                  "asr[attack=hp]": (0.75, 0.5, 1.0, 8), "asr_pre[attack=hp]": (1.0, 1.0, 1.0, 8),
                                  "delta_accuracy": (0.25, 0.1, 0.4, 8)},
    }
    for (model, method), metrics in cells.items():
        s = _summary(model, method, metrics, "tiny-vqa")
        s.layout = ReportLayout(headline=["asr", "asr_pre", "delta_accuracy"], rows_by="attack",
                                column_names={"asr": "tgt_in_sample", "asr_pre": "tgt_in_sample_pre",
                                              "delta_accuracy": "delta_accuracy"})
        write_cell(cell_dir(root, model, method, "tiny-vqa"), s, [])
    out = CliRunner().invoke(app, ["leaderboard", str(root)], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    md = (root / "leaderboard.md").read_text()
    rows = {line.split("|")[2].strip(): line for line in _table_lines(md) if "/ " in line}
    assert set(rows) == {"fact-erasure / bb", "fact-erasure / hp", "empty-response / bb", "empty-response / hp"}
    assert r"0.250 \[0.100, 0.400\]" in rows["fact-erasure / bb"]  # markdown-escaped brackets
    assert r"0.125 \[0.000, 0.300\]" in rows["fact-erasure / hp"]  # Δ-Acc repeated on each attack row
    agg = list(csv.DictReader(io.StringIO((root / "leaderboard_tiny-vqa.csv").read_text())))
    assert list(agg[0])[:4] == ["Name", "model", "method", "tgt_in_sample"]
    by_name = {r["Name"]: r for r in agg}
    assert float(by_name["m / empty-response / hp"]["tgt_in_sample"]) == 0.75
    assert float(by_name["m / empty-response / hp"]["tgt_in_sample_pre"]) == 1.0
    assert float(by_name["m / empty-response / hp"]["delta_accuracy"]) == 0.25
    assert float(by_name["m / fact-erasure / bb"]["tgt_in_sample_ci_low"]) == 0.1
