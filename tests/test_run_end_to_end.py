"""`harness run` end to end: apply -> evaluate -> results -> leaderboard, then a cached rerun."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.results import find_summaries, read_samples, read_summary

runner = CliRunner()

METRICS = ["exact_match_recall@forget", "exact_match_recall@retain", "probability@forget",
           "truth_ratio@forget", "forget_quality", "model_utility"]


@pytest.fixture
def experiment(toy_config, write_config) -> Path:
    """The toy grid (the original, grad-ascent, the reference) on 4 fictitious-facts items, as a YAML file."""
    return write_config(toy_config(
        methods=["none", {"name": "grad-ascent", "params": {"max_steps": 2, "batch_size": 2}}],
        metrics=METRICS, limit=4,
    ))


def _summaries(out: Path) -> dict[tuple[str, str], object]:
    return {(s.model, s.method): s for s in map(read_summary, find_summaries(out))}


def test_run_writes_results_and_a_cached_rerun_makes_no_model_calls(tmp_path, experiment):
    config = experiment
    first = runner.invoke(app, ["run", str(config)], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    out = tmp_path / "out"
    summaries = _summaries(out)
    assert set(summaries) == {("toy", "none"), ("toy", "grad-ascent"), ("toy-retain", "none")}

    s = summaries[("toy", "grad-ascent")]
    assert set(METRICS) <= set(s.metrics)
    for mv in s.metrics.values():
        if mv.value is not None:
            assert mv.ci_low <= mv.value + 1e-9 and mv.value <= mv.ci_high + 1e-9
    assert s.metrics["exact_match_recall@forget"].n == 4
    assert s.metrics["forget_quality"].value is not None  # compared against the reference model
    assert summaries[("toy-retain", "none")].metrics["forget_quality"].value is None
    prov = s.provenance
    assert prov.config_hash and prov.dataset_hash and prov.model_identity.startswith("sha256:")
    assert prov.adapter_hash and "+adapter:" in prov.model_identity
    assert prov.method_hparams["max_steps"] == 2 and prov.seed == 0
    assert s.cache.misses > 0

    samples = read_samples(out / "toy" / "grad-ascent" / "fictitious-facts" / "samples.jsonl")
    assert {r.split for r in samples} == {"forget10", "retain_perturbed", "real_authors", "world_facts"}
    forget = [r for r in samples if r.split == "forget10"]
    assert len(forget) == 4 and all(r.generation is not None for r in forget)
    assert all("truth_ratio@forget" in r.values for r in forget)

    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 3
    assert (out / "leaderboard.md").read_text().count("\n| toy") == 3

    # Rerun: every cell finished under the same recipe and code is skipped.
    before = {k: v.model_dump() for k, v in _summaries(out).items()}
    resumed = runner.invoke(app, ["run", str(config)], env={"COLUMNS": "200"})
    assert resumed.exit_code == 0, resumed.output
    assert "0 result cells computed, 3 finished earlier" in " ".join(resumed.output.split())
    assert {k: v.model_dump() for k, v in _summaries(out).items()} == before
    # --force recomputes: the adapter is reused and every response comes from the cache.
    second = runner.invoke(app, ["run", str(config), "--force"], env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    assert "reusing grad-ascent" in second.output
    for summary in _summaries(out).values():
        assert summary.cache.misses == 0 and summary.cache.hits > 0
    assert "0 misses" in second.output
    again = _summaries(out)[("toy", "grad-ascent")]
    assert again.metrics["probability@forget"].value == pytest.approx(s.metrics["probability@forget"].value)


def test_no_cache_flag_sends_everything(tmp_path, experiment):
    config = experiment
    data = yaml.safe_load(config.read_text())
    data["methods"] = ["none"]
    data.pop("reference")
    data["metrics"] = ["probability@forget"]
    config.write_text(yaml.safe_dump(data))
    for _ in range(2):
        result = runner.invoke(app, ["run", str(config), "--no-cache", "--force"])
        assert result.exit_code == 0, result.output
        (summary,) = _summaries(tmp_path / "out").values()
        assert summary.cache.hits == 0 and summary.cache.misses == 4


def test_reference_by_path(tmp_path, experiment):
    """A retain-only run's results, referenced by directory, feed forget quality."""
    config = experiment
    assert runner.invoke(app, ["run", str(config)]).exit_code == 0
    ref_cell = tmp_path / "out" / "toy-retain" / "none" / "fictitious-facts"
    data = yaml.safe_load(config.read_text())
    data.update(reference={"results": str(ref_cell)}, methods=["none"], output_dir=str(tmp_path / "out2"))
    config.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    by_path = _summaries(tmp_path / "out2")[("toy", "none")].metrics["forget_quality"].value
    in_run = _summaries(tmp_path / "out")[("toy", "none")].metrics["forget_quality"].value
    assert by_path == pytest.approx(in_run)


def test_leaderboard_command_rebuilds_from_files(tmp_path, experiment):
    config = experiment
    assert runner.invoke(app, ["run", str(config)]).exit_code == 0
    out = tmp_path / "out"
    (out / "leaderboard.md").unlink()
    result = runner.invoke(app, ["leaderboard", str(out), "--sort-by", "probability@forget"])
    assert result.exit_code == 0, result.output
    assert (out / "leaderboard.md").exists()
    bad = runner.invoke(app, ["leaderboard", str(out), "--sort-by", "nope"])
    assert bad.exit_code == 2


def test_an_adapter_without_effect_fails_loudly(tmp_path, tiny_model_dir, write_config):
    """A LoRA adapter whose B matrices are zero changes nothing: no numbers under its name."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))  # B = 0 at init
    lora.save_pretrained(tmp_path / "noop-adapter")
    config = {
        "zoo": {"toy-noop": {"path": str(tiny_model_dir), "adapter": str(tmp_path / "noop-adapter"),
                             "chat_template": "none"}},
        "models": ["toy-noop"],
        "benchmarks": ["fictitious-facts"],
        "metrics": ["probability@forget"],
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "limit": 2,
    }
    path = write_config(config)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert "had no effect" in result.output
    assert not list((tmp_path / "out").rglob("summary.json"))
