"""Attacks on unlearned models: the gain/recovery arithmetic, the probe rewrites, and a full run."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.api.benchmark import BenchmarkData, QAItem, TofuShapedBenchmark
from harness.cli import app
from harness.api.attack import paired_gain, recovery_rate
from harness.attacks.probes import ParaphraseProbe, PrefixProbe
from harness.attacks.relearn import ForgetSubset
from harness.api.metric import MetricResult
from harness.results import find_summaries, read_samples, read_summary


def _result(values: dict[str, float]) -> MetricResult:
    return MetricResult("m", float(np.mean(list(values.values()))), None, None, len(values), False, per_item=values)


def test_paired_gain_is_the_mean_per_item_difference():
    attacked = _result({"a": 1.0, "b": 1.0, "c": 0.0, "x": 1.0})
    before = _result({"a": 0.0, "b": 1.0, "c": 0.0})
    gain = paired_gain("relearn", "m", attacked, before, seed=0)
    assert gain.n == 3  # only items both measured
    assert gain.value == pytest.approx((1 + 0 + 0) / 3)
    assert gain.ci_low <= gain.value <= gain.ci_high
    assert gain.per_item == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_recovery_rate_by_hand():
    original = _result({"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0})
    unlearned = _result({"a": 0.0, "b": 0.0, "c": 0.0, "d": 1.0})
    attacked = _result({"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0})
    r = recovery_rate("relearn", "m", attacked, unlearned, original, seed=0)
    # removed = 1 - 0.25 = 0.75; back = 0.5 - 0.25 = 0.25 -> one third came back
    assert r.value == pytest.approx(1 / 3)
    assert r.ci_low <= r.value <= r.ci_high
    assert recovery_rate("relearn", "m", attacked, unlearned, None, seed=0).value is None
    assert recovery_rate("relearn", "m", attacked, original, original, seed=0).value is None  # nothing removed


class _Bench(TofuShapedBenchmark):
    name = "tiny-probe"

    def load(self) -> BenchmarkData:
        forget = [
            QAItem("f1", "Where was Ann born?", "Ann was born in Rome.", question_paraphrases=("Ann's birthplace?", "Ann came from where?")),
            QAItem("f2", "What does Bo do?", "Bo bakes.", question_paraphrases=("Bo's job?",)),
            QAItem("f3", "Who?", "Cy."),
        ]
        return BenchmarkData({"forget10": forget, "retain90": [], "retain_perturbed": []}, source="test")


def test_paraphrase_views_swap_in_each_wording():
    views = ParaphraseProbe().views(_Bench())
    assert len(views) == 2
    first = {i.id: i.question for i in views[0].split("forget10")}
    second = {i.id: i.question for i in views[1].split("forget10")}
    assert first == {"f1": "Ann's birthplace?", "f2": "Bo's job?"}
    assert second == {"f1": "Ann came from where?"}
    assert views[0].prompt(views[0].split("forget10")[0]) == "Question: Ann's birthplace?\nAnswer:"


def test_prefix_view_gives_the_first_half_of_the_answer():
    (view,) = PrefixProbe().views(_Bench())
    items = {i.id: i for i in view.split("forget10")}
    assert set(items) == {"f1", "f2"}  # "Cy." has one word: nothing to split
    f1 = items["f1"]
    assert f1.answer == "born in Rome."
    assert view.prompt(f1) == "Question: Where was Ann born?\nAnswer: Ann was"
    assert view.prompt(f1) + view.target(f1.answer) == "Question: Where was Ann born?\nAnswer: Ann was born in Rome."


def test_forget_subset_only_narrows_the_forget_split():
    bench = _Bench()
    view = ForgetSubset(bench, {"f2"})
    assert [i.id for i in view.split("forget10")] == ["f2"]
    assert view.forget_split() == "forget10" and view.prompt(bench.split("forget10")[0]).startswith("Question:")


def test_attacks_run_in_the_grid_and_rerun_from_cache(tmp_path, toy_config, write_config):
    path = write_config(toy_config(
        methods=["none", {"name": "grad-ascent", "params": {"max_steps": 2, "batch_size": 2}}],
        metrics=["exact_match_recall@forget", "probability@forget"],
        attacks=[{"name": "relearn", "params": {"steps": 2, "fraction": 0.5}}, "paraphrase_probe", "prefix_probe"],
        reference=None, limit=4,
    ))
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(path)])
    assert first.exit_code == 0, first.output
    cells = {(s.model, s.method): s for s in map(read_summary, find_summaries(tmp_path / "out"))}
    unlearned = cells[("toy", "grad-ascent")]
    for mid in ["relearn:exact_match_recall@forget", "relearn_unseen:probability@forget",
                "relearn_gain:probability@forget", "relearn_recovery:probability@forget",
                "prefix_probe:exact_match_recall@forget", "prefix_probe_gain:probability@forget"]:
        assert mid in unlearned.metrics, mid
    assert unlearned.metrics["relearn_unseen:probability@forget"].n == 2  # half of 4 items unseen
    assert unlearned.metrics["relearn_gain:probability@forget"].value is not None
    original = cells[("toy", "none")].metrics
    assert "relearn:exact_match_recall@forget" not in original  # relearning the original is pointless
    assert "paraphrase_probe:probability@forget" in original  # probes give the original's baseline
    samples = read_samples(tmp_path / "out" / "toy" / "grad-ascent" / "fictitious-facts" / "samples.jsonl")
    assert any("relearn:probability@forget" in r.values for r in samples)

    second = runner.invoke(app, ["run", str(path), "--force"])  # recompute the finished cells from the cache
    assert second.exit_code == 0, second.output
    for s in map(read_summary, find_summaries(tmp_path / "out")):
        assert s.cache.misses == 0, (s.model, s.method)


def test_unknown_attack_and_bad_parameter_are_config_errors(write_config):
    for attacks, needle in [(["relearnn"], "unknown attack"), ([{"name": "relearn", "params": {"fraction": 2}}], "fraction")]:
        path = write_config({"models": ["tiny-facts"], "benchmarks": ["fictitious-facts"], "attacks": attacks}, "a.yaml")
        result = CliRunner().invoke(app, ["validate", str(path)])
        assert result.exit_code == 2 and needle in result.output


def test_representation_attack_in_the_grid_compares_the_right_models(tmp_path, toy_config, write_config):
    """CKA to the original is 1 for the original itself; the reference's "original" is the grid's
    model, so CKA(reference, original) read from either cell is the same number (CKA is symmetric)."""
    path = write_config(toy_config(
        methods=["none", {"name": "grad-ascent", "params": {"max_steps": 2, "batch_size": 2}}],
        metrics=["probability@forget"],
        attacks=[{"name": "representation", "params": {"splits": ["forget"]}}],
        limit=8,
    ))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    cells = {(s.model, s.method): s.metrics for s in map(read_summary, find_summaries(tmp_path / "out"))}
    key_o, key_r = "representation:cka_original@forget", "representation:cka_retain_model@forget"
    assert cells[("toy", "none")][key_o].value == pytest.approx(1.0)
    assert cells[("toy-retain", "none")][key_r].value == pytest.approx(1.0)
    assert cells[("toy-retain", "none")][key_o].value == pytest.approx(cells[("toy", "none")][key_r].value, abs=1e-9)
    assert cells[("toy-retain", "none")][key_o].value < 1.0  # two different models
    assert 0 <= cells[("toy", "grad-ascent")][key_o].value <= 1
    # Every result states a direction: on the forget set, like the original means hidden (worse).
    assert cells[("toy", "grad-ascent")][key_o].higher_is_better is False
    assert cells[("toy", "grad-ascent")][key_r].higher_is_better is True
