"""A VLM grid through `harness run`: an image-text-to-text model unlearned on fictitious-faces,
its default FIUBench metrics, the Table-2 headline, and a rerun answered from the cache."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from harness.results import find_summaries, read_summary

runner = CliRunner()


def test_vlm_grid_end_to_end(tiny_vlm_dir, tmp_path, write_config):
    vlm = {"path": str(tiny_vlm_dir), "kind": "image-text-to-text", "dtype": "float32"}
    config = write_config({
        "zoo": {"vlm": vlm, "vlm-retain": vlm},
        "models": ["vlm"],
        "methods": ["none", {"name": "grad-ascent", "params": {"max_steps": 2, "batch_size": 2, "lr": 1.0e-2}}],
        "benchmarks": [{"name": "fictitious-faces", "params": {"forget_split": "forget5"}}],
        "reference": {"model": "vlm-retain"},
        "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "limit": 3,
    })
    first = runner.invoke(app, ["run", str(config)], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    summaries = {(s.model, s.method): s for s in map(read_summary, find_summaries(Path(tmp_path / "out")))}
    s = summaries[("vlm", "grad-ascent")]
    for metric in ("fiu_rouge_l_recall@forget", "fiu_keyword_em@forget", "fiu_ape@forget", "fiu_truth_ratio@retain",
                   "fiu_mia_min_k@forget", "model_utility", "fiu_acc@visual", "forget_quality", "fiu_avg_fq"):
        assert s.metrics[metric].value is not None, metric
    assert s.metrics["fiu_avg_mu"].value is None  # no GPT-Eval judge: reported missing, never faked
    assert s.metrics["forget_quality"].value is not None  # against the reference model's cell
    assert "+adapter:" in s.provenance.model_identity
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| model"))
    assert header.index("fiu\\_rouge\\_l\\_recall@retain") < header.index("fiu\\_avg\\_fq")
    again = runner.invoke(app, ["run", str(config), "--force"], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "0 misses" in again.output, again.output
