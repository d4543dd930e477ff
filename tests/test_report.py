"""report.html and the result frames, without a browser: what the page holds, its policy, its
plots, and hostile text in every report format (the browser tests are test_report_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.results import load, load_samples
from harness.reports.html import json_for_script, render_report
from harness.reports.svg import Estimate, Point, _ticks, bar_chart, scatter
from tests.cli_subprocess import run_one, user_error_problems
from tests.hostile import FAMILIES, ITEM_ID, MODEL, PAYLOADS, assert_markdown_and_csv_intact, write_hostile_results
from tests.test_leaderboard import INPUTS, _write


def _data(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_load_is_a_tidy_frame_of_every_metric_with_ci_n_direction_and_provenance(tmp_path: Path) -> None:
    df = load(_write(tmp_path))
    assert len(df) == sum(len(m) for m in INPUTS.values())
    row = df[(df.method == "grad-ascent") & (df.metric == "forget_quality")].iloc[0]
    assert (row.value, row.ci_low, row.ci_high, row.n) == (0.41234, 0.35, 0.4706, 20)
    assert row.direction == "higher"
    assert set(df[df.metric == "extraction_strength"].direction) == {"lower"}
    assert row.model_identity == "sha256:" + "ab" * 32 and row.dataset_hash == "d1" * 32 and row.seed == 0
    assert {"adapter_hash", "judge", "git_commit", "config_hash", "dataset_source"} <= set(df.columns)
    assert df.value.dtype == float


def test_load_samples_has_one_row_per_item_and_metric(tmp_path: Path) -> None:
    root = write_hostile_results(tmp_path)
    s = load_samples(root)
    assert len(s) == 2 * 2  # two cells x two items x one metric
    hit = s[(s.item_id == ITEM_ID) & (s.method == "none")].iloc[0]
    assert hit.metric == "asr@adversarial" and hit.value == 1.0 and hit.note.startswith("complied")
    assert hit.prompt.startswith("Tell me <script>")


def test_load_of_a_missing_or_empty_directory_is_a_user_error(tmp_path: Path) -> None:
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="not found"):
        load(tmp_path / "nope")
    with pytest.raises(HarnessError, match="no result summaries"):
        load_samples(tmp_path)


def test_the_page_is_self_contained_and_its_policy_pins_its_own_script_and_style(tmp_path: Path) -> None:
    page = render_report(_write(tmp_path))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "img-src data:" in csp
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        body = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        assert len(body) == 1
        digest = base64.b64encode(hashlib.sha256(body[0].encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp  # the browser runs exactly this, nothing else
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # Nothing to fetch: no src, no link, no URL but in-page anchors.
    assert not re.search(r"\s(src|srcset|action|poster)\s*=", page)
    assert re.findall(r'href="([^"]*)"', page) == ["#leaderboard", "#plots", "#samples"]
    assert "<link" not in page and "@import" not in page and "url(" not in page
    data = _data(page)
    assert [t["title"] for t in data["tables"]] == ["Leaderboard: fictitious_facts", "fictitious_facts: every metric"]


def test_json_for_script_cannot_end_its_block() -> None:
    text = json_for_script({"g": "</script><!-- <script>&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"g": "</script><!-- <script>&"}


def test_the_leaderboard_data_carries_values_cis_n_directions_and_roles(tmp_path: Path) -> None:
    data = _data(render_report(_write(tmp_path)))
    table = next(t for t in data["tables"] if t["kind"] == "all")
    keys = [c["key"] for c in table["columns"]]
    dirs = {c["key"]: c["dir"] for c in table["columns"]}
    assert dirs == {"forget_quality": 1, "extraction_strength": -1}
    row = next(r for r in table["rows"] if r["method"] == "grad-ascent")
    assert row["cells"][keys.index("extraction_strength")] == [0.2, 0.15, 0.25, 18]
    cells = {(c["model"], c["method"]): c for c in data["cells"]}
    assert cells[("tiny-facts", "none")]["role"] == "original"
    assert cells[("tiny-facts", "grad-ascent")]["prov"]["model_identity"] == "sha256:" + "ab" * 32


def test_ticks_are_round_and_cover_the_range() -> None:
    assert _ticks(0.45, 0.667) == [0.45, 0.5, 0.55, 0.6, 0.65, 0.7]  # step 0.05: (0.667-0.45)/5 rounded up
    assert _ticks(0, 62) == [0, 20, 40, 60, 80]
    t = _ticks(-11.2, 0.5)
    assert t[0] <= -11.2 and t[-1] >= 0.5


def test_plots_draw_each_value_with_its_ci_and_escape_their_labels() -> None:
    hostile = "<script>x</script>"
    svg = bar_chart("t", [hostile, "b"], ["m1", hostile],
                    {(hostile, "m1"): Estimate(0.5, 0.4, 0.6, 10), ("b", hostile): Estimate(0.2)})
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="bar"') == 2 and svg.count('class="err"') == 1  # only the bar with a CI
    pts = scatter("s", "x", "y", [Point("a", Estimate(0.1, 0.05, 0.2), Estimate(0.7, 0.6, 0.8)),
                                  Point(hostile, Estimate(0.3), Estimate(0.5), marked=True)])
    assert pts.count("<circle") == 2 and pts.count('class="err"') == 2 and "<script>" not in pts
    assert 'fill="#fff"' in pts  # the reference row is drawn hollow


def test_the_demo_kind_of_results_get_the_tradeoff_and_asr_by_family_plots(tmp_path: Path) -> None:
    from tests.test_leaderboard import _summary
    from harness.results import cell_dir, write_cell

    _write(tmp_path)
    for method in ("none", "grad-ascent"):  # a utility metric beside the forget metrics
        s = _summary("tiny-facts", method, {"model_utility": (0.6, 0.55, 0.65, 20),
                                            "rouge_l_recall@forget": (0.9 if method == "none" else 0.3, 0.2, 0.95, 20)},
                     benchmark="facts2")
        write_cell(cell_dir(tmp_path, "tiny-facts", method, "facts2"), s, [])
    write_hostile_results(tmp_path / "safety")
    page = render_report(tmp_path)
    assert "facts2: rouge_l_recall@forget vs model_utility" in page
    assert page.count("<circle") == 2
    safety = render_report(tmp_path / "safety")
    assert "ASR by attack family, and over-refusal" in safety
    assert safety.count('class="bar"') == 2 * (len(FAMILIES) + 1)  # two rows x (families + overall)


def test_report_command_writes_the_page_and_refuses_a_missing_dir(tmp_path: Path) -> None:
    root = _write(tmp_path / "r")
    ok = run_one(["report", str(root)])
    assert ok.code == 0, ok.stderr[-2000:]
    assert (root / "report.html").is_file() and str(root / "report.html") in ok.stdout
    bad = run_one(["report", str(tmp_path / "missing")])
    assert not user_error_problems(bad), bad.stderr
    assert "results directory not found" in bad.stderr


def test_hostile_text_stays_text_in_markdown_csv_terminal_and_html(tmp_path: Path) -> None:
    root = write_hostile_results(tmp_path)
    out = run_one(["leaderboard", str(root)], env={"COLUMNS": "300"})
    assert out.code == 0, out.stderr[-2000:]
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout  # ANSI escapes neutralised
    assert_markdown_and_csv_intact(root)

    page = render_report(root)
    head, _, rest = page.partition('<script type="application/json"')
    for payload in PAYLOADS:  # outside the data block, only escaped forms
        assert payload not in head
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the data block and ours
    assert "<img" not in page
    data = _data(page)
    assert MODEL in {c["model"] for c in data["cells"]}  # the text itself, for textContent
    assert any(s.startswith("</script>") for s in data["strings"])



def test_the_sample_viewer_keeps_the_first_items_of_each_split_and_says_how_many_it_left_out(tmp_path: Path) -> None:
    root = write_hostile_results(tmp_path)
    full, capped = _data(render_report(root)), _data(render_report(root, max_samples=1))
    assert len(full["samples"]["adversarial-probes"]["items"]) == 2
    assert len(capped["samples"]["adversarial-probes"]["items"]) == 1
    assert all(c["omitted"] == {"adversarial": 1} for c in capped["cells"])
    assert all(c["omitted"] == {} for c in full["cells"])
    runs, values = next(iter(capped["samples"]["adversarial-probes"]["cells"].values()))["values"]["asr@adversarial"]
    assert runs == [[0, 1]] and values == [1.0]  # item 0 (the hostile one), its value
    runs, _ = next(iter(full["samples"]["adversarial-probes"]["cells"].values()))["values"]["asr@adversarial"]
    assert runs == [[0, 2]]  # one run of two items


def test_image_grids_next_to_the_results_are_inlined_as_data_uris(tmp_path: Path) -> None:
    """A text-to-image cell's grid.png (harness/grids.py) shows in the page as a data: URI (the
    policy allows no other image source); a grid.png that is not a PNG is left out."""
    import io

    from PIL import Image

    from harness.results import find_summaries

    root = _write(tmp_path)
    cells = [p.parent for p in find_summaries(root)]
    buf = io.BytesIO()
    Image.new("RGB", (6, 3), (200, 10, 10)).save(buf, format="PNG")
    (cells[0] / "grid.png").write_bytes(buf.getvalue())
    (cells[1] / "grid.png").write_bytes(b"<script>alert(1)</script>")  # not a PNG: not shown
    page = render_report(root)
    srcs = re.findall(r'\ssrc="([^"]*)"', page)
    assert len(srcs) == 1 and srcs[0].startswith("data:image/png;base64,")
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == buf.getvalue()
    assert "Image grids" in page and "alert(1)" not in page
