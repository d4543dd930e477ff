"""`--executor ray`: cells as Ray tasks on a local 2-CPU Ray, same summaries as the local run."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import parse_config
from harness.executor import cell_num_gpus
from harness.results import find_summaries, read_summary
from harness.runner import Runner

ray = pytest.importorskip("ray")

METRICS = ["exact_match_recall@forget", "probability@forget", "truth_ratio@forget", "forget_quality"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _config(toy_config, tmp_path: Path, out: str, **extra):
    return parse_config(toy_config(
        methods=["none", {"name": "grad-ascent", "params": {"epochs": 1, "batch_size": 2}}],
        metrics=METRICS, output_dir=str(tmp_path / out), **extra,
    ))


def _summaries(out: Path) -> dict:
    return {(s.model, s.method, s.benchmark): s for s in map(read_summary, find_summaries(out))}


@pytest.mark.slow  # starts Ray and trains twice (about 45 s on an idle 2-core machine)
def test_ray_executor_runs_the_grid_and_matches_the_local_run(tmp_path, toy_config, local_ray):
    local = Runner(_config(toy_config, tmp_path, "local")).run()
    report = Runner(_config(toy_config, tmp_path, "ray")).run(executor="ray")

    assert len(report.cells) == len(local.cells) == 3
    assert all(p.is_relative_to(tmp_path / "ray") for p in report.cells)
    expected, got = _summaries(tmp_path / "local"), _summaries(tmp_path / "ray")
    assert set(got) == set(expected) == {("toy", "none", "fictitious-facts"), ("toy", "grad-ascent", "fictitious-facts"),
                                         ("toy-retain", "none", "fictitious-facts")}
    for key, s in expected.items():
        g = got[key]
        assert set(g.metrics) == set(s.metrics)
        for mid, mv in s.metrics.items():
            other = g.metrics[mid]
            assert other.n == mv.n and other.higher_is_better == mv.higher_is_better, (key, mid)
            for field in ("value", "ci_low", "ci_high"):
                a, b = getattr(mv, field), getattr(other, field)
                assert (a is None) == (b is None) and (a is None or b == pytest.approx(a, rel=1e-4, abs=1e-6)), \
                    (key, mid, field, a, b)
        assert g.provenance.config_hash == s.provenance.config_hash
        if key[1] == "none":  # an adapter trained in a 1-thread Ray worker may differ in its last bits
            assert g.provenance.model_identity == s.provenance.model_identity
    # forget quality on the unlearned model came from the reference task's results
    assert got[("toy", "grad-ascent", "fictitious-facts")].metrics["forget_quality"].value is not None
    assert report.cache_hits + report.cache_misses > 0


def test_ray_task_errors_reach_the_caller_as_harness_errors(tmp_path, toy_config, local_ray):
    from harness.errors import HarnessError

    cfg = _config(toy_config, tmp_path, "bad", benchmarks=[{"name": "fictitious-facts",
                                                            "params": {"forget_split": "forget99"}}])
    with pytest.raises(HarnessError) as info:
        Runner(cfg).run(executor="ray")
    assert "forget99" in str(info.value) and "\n" not in str(info.value).strip()


def test_num_gpus_per_cell(toy_zoo):
    base = {"zoo": toy_zoo, "models": ["toy"], "benchmarks": ["fictitious-facts"]}
    assert cell_num_gpus(parse_config(base), "toy") == 0  # CPU host default
    assert cell_num_gpus(parse_config({**base, "device": "cuda"}), "toy") == 1
    assert cell_num_gpus(parse_config({**base, "num_gpus": 0.5}), "toy") == 0.5
    per_model = parse_config({**base, "num_gpus": {"toy": 2}})
    assert cell_num_gpus(per_model, "toy") == 2 and cell_num_gpus(per_model, "toy-retain") == 0
    tp = {**toy_zoo, "toy": {**toy_zoo["toy"], "vllm": {"tensor_parallel_size": 4}}}
    assert cell_num_gpus(parse_config({**base, "zoo": tp, "device": "cuda:0"}), "toy") == 4
    assert cell_num_gpus(parse_config({**base, "zoo": tp, "device": "cpu"}), "toy") == 0
