"""`--limit` limits evaluation only (as lm-eval's); `train_limit` sizes the data methods train on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.config import parse_config
from harness.plan import Cell
from harness.session import Session


def config(tmp_path, **over):
    data = {"models": ["tiny-facts"], "methods": ["grad-ascent"],
            "benchmarks": [{"name": "fictitious-facts", "params": {"forget_split": "forget10"}}],
            "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), **over}
    return parse_config(data, source="test")


def test_limit_cuts_evaluation_but_not_training(tmp_path):
    session = Session(config(tmp_path, limit=3))
    evaluated, _ = session.benchmark(0)
    trained = session.training_benchmark(0)
    full = Session(config(tmp_path)).benchmark(0)[0]
    assert len(evaluated.split("forget10")) == 3
    assert len(trained.split("forget10")) == len(full.split("forget10")) > 3
    assert len(trained.split(trained.retain_split())) == len(full.split(full.retain_split()))
    assert trained.data.data_hash() == full.data.data_hash()  # the artefact recipe is the full run's


def test_train_limit_sizes_the_training_data(tmp_path):
    session = Session(config(tmp_path, limit=3, train_limit=7))
    assert len(session.benchmark(0)[0].split("forget10")) == 3
    assert len(session.training_benchmark(0).split("forget10")) == 7
    same = Session(config(tmp_path))  # no limits: one benchmark serves both
    assert same.training_benchmark(0) is same.benchmark(0)[0]
    with pytest.raises(Exception, match="train_limit"):
        config(tmp_path, train_limit=0)


class Stop(Exception):
    pass


def test_a_cell_trains_its_method_on_the_training_benchmark(tmp_path, monkeypatch):
    import harness.cell as cell_module

    seen = {}

    def fake_apply(session, spec, method, benchmark, bentry):
        seen["n_forget"] = len(benchmark.split(benchmark.forget_split()))
        raise Stop

    monkeypatch.setattr(cell_module, "apply_method", fake_apply)
    session = Session(config(tmp_path, limit=3))
    with pytest.raises(Stop):
        cell_module.run_cell(session, Cell(benchmark=0, model="tiny-facts", method=0), None)
    assert seen["n_forget"] == len(session.training_benchmark(0).split("forget10")) > 3


def test_both_limits_are_recorded():
    from harness.assemble import assemble_summary

    bench = SimpleNamespace(name="b", options={}, data=SimpleNamespace(source="s", data_hash=lambda: "h"),
                            headline_metrics=(), views={}, answer_eos=False)
    s = assemble_summary(model="m", method="x", benchmark_name="b", benchmark=bench, results={}, config_hash="h", seed=0,
                         device="cpu", backend=SimpleNamespace(identity="i", chat_template_hash=None),
                         spec=SimpleNamespace(name="m"), eval_path="p", artifact=None, reference=None, judges=None,
                         cache=(0, 0), timing={}, limits={"limit": 3, "train_limit": None})
    assert (s.provenance.limit, s.provenance.train_limit) == (3, None)
