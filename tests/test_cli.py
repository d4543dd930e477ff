"""The CLI: bad input exits 2 with one line and writes nothing; `ls` and `validate` work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _assert_user_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


def _no_results(out_dir: Path) -> None:
    assert not out_dir.exists() or not any(p.is_file() for p in out_dir.rglob("*"))


def _config(tmp_path: Path, **over):
    """The built-in tiny-facts model by name (no zoo): these configs are rejected, or only
    validated, before any model is loaded."""
    data = {
        "models": ["tiny-facts"],
        "benchmarks": ["fictitious-facts"],
        "output_dir": str(tmp_path / "out"),
    }
    data.update(over)
    return data


def test_missing_config_file(tmp_path):
    _assert_user_error(runner.invoke(app, ["run", str(tmp_path / "nope.yaml")]), "config file not found")


def test_malformed_yaml(tmp_path, write_config):
    p = write_config("models: [tiny-facts\nbenchmarks: {")
    _assert_user_error(runner.invoke(app, ["run", str(p)]), "not valid YAML")
    _no_results(tmp_path / "out")


def test_unknown_config_key(tmp_path, write_config):
    p = write_config(_config(tmp_path, modles=["x"]))
    _assert_user_error(runner.invoke(app, ["run", str(p)]), "modles")


def test_unknown_benchmark_suggests_the_close_name(tmp_path, write_config):
    p = write_config(_config(tmp_path, benchmarks=["fictitous-facts"]))
    _assert_user_error(runner.invoke(app, ["run", str(p)]), "unknown benchmark", "did you mean 'fictitious-facts'")
    _no_results(tmp_path / "out")


def test_unknown_method(tmp_path, write_config):
    p = write_config(_config(tmp_path, methods=["grad-ascnt"]))
    _assert_user_error(runner.invoke(app, ["run", str(p)]), "unknown method", "grad-ascent")
    _no_results(tmp_path / "out")


def test_unknown_metric_and_bad_hyperparameter(tmp_path, write_config):
    p = write_config(_config(tmp_path, metrics=["forget_qualty"]))
    _assert_user_error(runner.invoke(app, ["run", str(p)]), "unknown metric", "forget_quality")
    p = write_config(_config(tmp_path, methods=[{"name": "npo", "params": {"betta": 1}}]), "b.yaml")
    _assert_user_error(runner.invoke(app, ["run", str(p)]), "betta")


def test_nonexistent_model_path(tmp_path):
    missing = str(tmp_path / "no-such-model")
    _assert_user_error(
        runner.invoke(app, ["run", "--model", missing, "--benchmark", "fictitious-facts", "-o", str(tmp_path / "out")]),
        "does not exist",
    )
    _no_results(tmp_path / "out")


def test_bad_flags(tmp_path):
    _assert_user_error(runner.invoke(app, ["run", "--model", "tiny-facts", "--benchmark", "fictitious-facts",
                                           "--batch-size", "lots"]), "--batch-size")
    _assert_user_error(runner.invoke(app, ["run", "--method", "npo"]), "--model and --benchmark")
    _assert_user_error(runner.invoke(app, ["ls", "widgets"]), "unknown kind")
    _assert_user_error(runner.invoke(app, ["leaderboard", str(tmp_path / "none")]), "not found")


def test_ls_lists_every_registered_name():
    from harness.catalog import ATTACKS, BENCHMARKS, METHODS, METRICS
    from harness.catalog import MODELS

    result = runner.invoke(app, ["ls"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in BENCHMARKS.names() + METHODS.names() + METRICS.names() + ATTACKS.names() + MODELS.names():
        assert name in result.output
    methods_only = runner.invoke(app, ["ls", "methods"], env={"COLUMNS": "200"})
    assert "npo" in methods_only.output and "fictitious-facts" not in methods_only.output


def test_validate_ok_and_bad(tmp_path, write_config):
    ok = write_config(_config(tmp_path, methods=["none", {"name": "npo", "params": {"beta": 0.2}}]))
    result = runner.invoke(app, ["validate", str(ok)])
    assert result.exit_code == 0 and "ok" in result.output
    bad = write_config(_config(tmp_path, batch_size=0), "bad.yaml")
    _assert_user_error(runner.invoke(app, ["validate", str(bad)]), "batch_size")


def test_real_entry_point_exits_2_without_traceback(tmp_path):
    """The installed console script path, as a user runs it (a subprocess, not CliRunner)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", "from harness.cli import app; app()", "run", str(tmp_path / "missing.yaml")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error:")
    assert len(proc.stderr.strip().splitlines()) == 1



def test_method_params_from_the_command_line(tmp_path, write_config):
    from harness.cli import _with_params

    out, benchmarks = _with_params(["none", {"name": "npo", "params": {"lr": 0.1}}], ["tofu"],
                                   ["npo.beta=0.25", "npo.peft=full", "tofu.forget_split=forget05"])
    assert out == [{"name": "none", "params": {}}, {"name": "npo", "params": {"lr": 0.1, "beta": 0.25, "peft": "full"}}]
    assert benchmarks == [{"name": "tofu", "params": {"forget_split": "forget05"}}]
    p = write_config(_config(tmp_path, methods=["npo"]))
    _assert_user_error(runner.invoke(app, ["run", str(p), "-p", "npo.betta=1"]), "betta")
    _assert_user_error(runner.invoke(app, ["run", str(p), "-p", "simnpo.beta=1"]), "not in this run's methods")
    _assert_user_error(runner.invoke(app, ["run", str(p), "-p", "beta=1"]), "NAME.KEY=VALUE")


def test_every_example_config_validates():
    """The configs the README points to stay valid as the code moves (names, builders, options)."""
    from tests.cli_subprocess import run_batch

    examples = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
    assert examples
    for path, o in zip(examples, run_batch([["validate", str(p)] for p in examples])):
        assert o.code == 0, (path.name, o.stderr[-500:])
