"""UnLOK-VQA's protocol through `harness run`: tiny-vqa instances on a tiny LLaVA, a defence per
cell, the defence × attack leaderboard and its result_agg.csv-layout CSV, a rerun with no model
call, and the one-line refusals of a method that is not a defence (and of a defence elsewhere)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from harness.results import find_summaries, read_summary

runner = CliRunner()


def _config(write_config, tiny_vlm_dir, tmp_path, methods, benchmark=None):
    vlm = {"path": str(tiny_vlm_dir), "kind": "image-text-to-text", "dtype": "float32"}
    return write_config({
        "zoo": {"vlm": vlm}, "models": ["vlm"], "methods": methods,
        "benchmarks": [benchmark or {"name": "tiny-vqa", "params": {"n_instances": 3, "attacks": ["hp", "bb"],
                                                                   "n_retain": 2}}],
        "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
    })


def test_defences_run_per_instance_and_report_the_authors_table(tiny_vlm_dir, tmp_path, write_config):
    erase = {"name": "fact-erasure", "params": {"norm_constraint": 0.05, "lr": 0.01, "steps": 3}}
    config = _config(write_config, tiny_vlm_dir, tmp_path, ["none", erase])
    first = runner.invoke(app, ["run", str(config)], env={"COLUMNS": "220"})
    assert first.exit_code == 0, first.output
    cells = {s.method: s for s in map(read_summary, find_summaries(tmp_path / "out"))}
    assert set(cells) == {"none", "fact-erasure"}
    s = cells["fact-erasure"]
    for metric in ("asr[attack=bb]", "asr_pre[attack=bb]", "attack_frac[attack=bb]", "asr[attack=hp]",
                   "retain_rate", "delta_accuracy_neighborhood", "rewrite_score"):
        assert s.metrics[metric].n == 3, metric
    none = cells["none"].metrics  # no defence: after equals before
    assert none["asr[attack=bb]"].value == none["asr_pre[attack=bb]"].value
    assert none["delta_accuracy"].value == 0
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "fact-erasure / bb" in board and "fact-erasure / hp" in board and "none / bb" in board
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "leaderboard_tiny-vqa.csv").read_text())))
    assert {r["Name"] for r in rows} == {"vlm / fact-erasure / bb", "vlm / fact-erasure / hp", "vlm / none / bb",
                                        "vlm / none / hp"}
    row = next(r for r in rows if r["Name"] == "vlm / fact-erasure / bb")
    assert float(row["tgt_in_sample"]) == s.metrics["asr[attack=bb]"].value
    assert float(row["rewrite_score"]) == s.metrics["rewrite_score"].value
    again = runner.invoke(app, ["run", str(config), "--force"], env={"COLUMNS": "220"})
    assert again.exit_code == 0, again.output
    assert "0 edits made" in again.output and "0 misses" in again.output


def test_only_defences_run_per_instance(tiny_vlm_dir, tmp_path, write_config):
    bad = _config(write_config, tiny_vlm_dir, tmp_path, [{"name": "grad-ascent", "params": {"max_steps": 1}}])
    out = runner.invoke(app, ["validate", str(bad)])
    assert out.exit_code == 2 and "per-instance defences" in out.output and "fact-erasure" in out.output
    assert "Traceback" not in out.output
    elsewhere = _config(write_config, tiny_vlm_dir, tmp_path, ["fact-erasure"],
                        {"name": "fictitious-faces", "params": {"forget_split": "forget5"}})
    out = runner.invoke(app, ["validate", str(elsewhere)])
    assert out.exit_code == 2 and "is a per-instance defence" in out.output, out.output
