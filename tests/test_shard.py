"""`harness run --shard i/n`: complete, disjoint shares whose results merge into one leaderboard."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import parse_config
from harness.errors import HarnessError
from harness.plan import Cell, Shard, ShardError, finished_results, assign, dependencies, grid_cells, parse_shard
from harness.results import read_summary

runner = CliRunner()

METRICS = ["exact_match_recall@forget", "probability@forget", "truth_ratio@forget", "forget_quality"]


def _grid_config(reference_in_models: bool = False):
    models = ["a", "b", "c"] + (["r"] if reference_in_models else [])
    return parse_config({
        "models": models,
        "methods": ["grad-ascent", "none", {"name": "npo", "params": {"beta": 0.2}}],
        "benchmarks": ["fictitious-facts", {"name": "tofu", "params": {"forget_split": "forget05"}}],
        "reference": {"model": "r"},
    })


@pytest.mark.parametrize("reference_in_models", [False, True])
@pytest.mark.parametrize("assignment", ["round-robin", "hash"])
def test_shards_are_complete_disjoint_and_deterministic(reference_in_models, assignment):
    cfg = _grid_config(reference_in_models)
    cells = grid_cells(cfg)
    keys = [c.key(cfg) for c in cells]
    # 3 models x 3 methods x 2 benchmarks + a reference per benchmark (shared with a grid cell if r is a model)
    assert len(set(keys)) == 2 * (len(cfg.models) * 3 + (0 if reference_in_models else 1))
    for n in range(1, 8):
        shares = [assign(cfg, Shard(i, n), assignment) for i in range(1, n + 1)]
        owned = [{c.key(cfg) for c in share} for share in shares]
        for x, y in itertools.combinations(owned, 2):
            assert not x & y  # no result file has two owners
        assert set().union(*owned) == set(keys)  # every cell is run by some shard
        assert sum(len(s) for s in shares) == len(cells)  # ... exactly once
        assert shares == [assign(cfg, Shard(i, n), assignment) for i in range(1, n + 1)]  # deterministic
        if assignment == "round-robin":
            sizes = [len(o) for o in owned]
            assert max(sizes) - min(sizes) <= 1
    if reference_in_models:  # the reference role and r's own "none" cell write one file: one owner
        ref = Cell(0, "r", None, reference=True)
        for i in range(1, 4):
            share = assign(cfg, Shard(i, 3), assignment)
            assert (ref in share) == (Cell(0, "r", 1) in share)


def test_dependencies_name_the_reference_and_the_method_less_cell():
    cfg = _grid_config()
    ga, none = Cell(1, "b", 0), Cell(1, "b", 1)
    ref = Cell(1, "r", None, reference=True)
    assert dependencies(cfg, ga) == [ref, none]
    assert dependencies(cfg, none) == [ref]
    assert dependencies(cfg, ref) == []
    # Run order: every dependency comes before its dependants.
    order = {c: k for k, c in enumerate(grid_cells(cfg))}
    assert all(order[d] < order[c] for c in order for d in dependencies(cfg, c))
    # Saved reference results replace the reference model: no reference cell to run.
    saved = cfg.model_copy(update={"reference": cfg.reference.model_copy(update={"results": "somewhere"})})
    assert not any(c.reference for c in grid_cells(saved)) and dependencies(saved, none) == []


@pytest.mark.parametrize("text,expected", [("1/2", Shard(1, 2)), ("2/2", Shard(2, 2)), (" 3 / 7 ", Shard(3, 7)),
                                           ("1/1", Shard(1, 1))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("bad", ["0/2", "3/2", "1/0", "0/0", "x", "1", "1/2/3", "-1/2", "a/b", "", "1.5/2"])
def test_bad_shard_is_a_harness_error(bad):
    with pytest.raises(ShardError) as info:
        parse_shard(bad)
    assert isinstance(info.value, HarnessError) and "\n" not in str(info.value)


@pytest.mark.parametrize("args", [["--shard", "3/2"], ["--shard", "two/4"], ["--shard", "0/1"],
                                  ["--executor", "spark"]])
def test_cli_rejects_bad_shard_and_executor_with_one_line(args, tmp_path):
    result = runner.invoke(app, ["run", "--model", "tiny-facts", "--benchmark", "fictitious-facts",
                                 "-o", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert not (tmp_path / "out").exists()  # rejected before any work


def _experiment(toy_config, write_config, tmp_path: Path, out: str) -> Path:
    return write_config(toy_config(
        methods=["none", {"name": "grad-ascent", "params": {"epochs": 1, "batch_size": 2}}],
        metrics=METRICS,
        # relearn's recovery rate compares against the method-less cell's results
        attacks=[{"name": "relearn", "params": {"steps": 2, "fraction": 0.5}}],
        output_dir=str(tmp_path / out),
    ), f"{out}.yaml")


def _board(out: Path) -> pd.DataFrame:
    """The leaderboard CSV (one row per model x method) without columns naming file paths."""
    df = pd.read_csv(out / "leaderboard.csv")
    df = df[[c for c in df.columns if "path" not in c]]
    return df.sort_values(["model", "method"]).reset_index(drop=True)


@pytest.mark.slow  # three runs that train (about 45 s on an idle 2-core machine)
def test_two_shards_in_one_dir_give_the_unsharded_leaderboard(tmp_path, toy_config, write_config):
    whole = _experiment(toy_config, write_config, tmp_path, "whole")
    sharded = _experiment(toy_config, write_config, tmp_path, "sharded")
    first = runner.invoke(app, ["run", str(whole)], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output

    # Shard 2 goes first: its grad-ascent cell needs the reference and the method-less cell,
    # which belong to shard 1 and are not on disk yet, so it computes them itself.
    keys = sorted(p.parent.relative_to(tmp_path / "whole").as_posix()
                  for p in (tmp_path / "whole").rglob("summary.json"))
    assert keys == ["toy-retain/none/fictitious-facts", "toy/grad-ascent/fictitious-facts",
                    "toy/none/fictitious-facts"]
    two = runner.invoke(app, ["run", str(sharded), "--shard", "2/2"], env={"COLUMNS": "200"})
    assert two.exit_code == 0, two.output
    assert "shard 2/2: 1 of 3 cells" in two.output and "not on disk yet" in two.output
    one = runner.invoke(app, ["run", str(sharded), "--shard", "1/2"], env={"COLUMNS": "200"})
    assert one.exit_code == 0, one.output
    assert "shard 1/2: 2 of 3 cells" in one.output and "evaluating toy × grad-ascent" not in one.output

    expected, got = _board(tmp_path / "whole"), _board(tmp_path / "sharded")
    assert len(expected) == len(got) == 3 and set(METRICS) <= set(got.columns)
    pd.testing.assert_frame_equal(expected, got)
    unlearned = got[got.method == "grad-ascent"].iloc[0]
    assert pd.notna(unlearned["forget_quality"])  # compared against the reference from shard 1
    summary = read_summary(tmp_path / "sharded" / "toy" / "grad-ascent" / "fictitious-facts" / "summary.json")
    recovery = [mv for mid, mv in summary.metrics.items() if mid.startswith("relearn_recovery:")]
    assert recovery and all(mv.details.get("reason") != "no run of the original model" for mv in recovery)

    # A plain rerun of shard 2 skips its finished cell; a forced one recomputes it and finds its
    # dependencies finished on disk, so it loads them instead of computing them again.
    again = runner.invoke(app, ["run", str(sharded), "--shard", "2/2"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "finished earlier: toy × grad-ascent" in again.output and "evaluating" not in again.output
    again = runner.invoke(app, ["run", str(sharded), "--shard", "2/2", "--force"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "using finished toy × none" in again.output and "not on disk yet" not in again.output
    pd.testing.assert_frame_equal(expected, _board(tmp_path / "sharded"))

    # A finished cell written under another config (here: another limit) is not trusted.
    from harness.config import load_config
    from harness.runner import Runner

    cfg = load_config(sharded)
    cell = Cell(0, "toy", 0)
    r = Runner(cfg)
    assert finished_results(r.session, cell) is not None
    other = Runner(cfg.model_copy(update={"limit": cfg.limit + 1}))
    assert finished_results(other.session, cell) is None
