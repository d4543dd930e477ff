"""Issue 18's remaining points: configs are data, no work before every path is checked, no
leftovers after a kill, one rule for oversized fields, and one run per cell at a time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.cli_subprocess import ROOT, assert_user_error, run_batch, run_one


def test_a_config_cannot_call_code(tmp_path, write_config):
    """`builder: os:abort` used to be imported and called; now only registered builders exist."""
    out = tmp_path / "out"
    cfg = write_config({"zoo": {"x": {"builder": "os:abort"}}, "models": ["x"], "benchmarks": ["fictitious-facts"],
                        "output_dir": str(out)})
    for o in run_batch([["validate", str(cfg)], ["run", str(cfg)]]):
        line = assert_user_error(o, "unknown builder 'os:abort'", "cannot import code", out_dir=out)
        assert "known:" in line and "tiny-facts" in line


def test_everything_is_checked_before_any_work(tmp_path, toy_config, write_config):
    """A missing dataset path in the second benchmark, a bad output dir, limit 0 or -5: all
    refused by `validate` and by `run` before the first cell, with no result files."""
    out = tmp_path / "out"
    second_missing = toy_config(benchmarks=["fictitious-facts", {"name": "alkali", "params": {"path": str(tmp_path / "nope.jsonl")}}],
                                output_dir=str(out))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    cases = [
        (write_config(second_missing, "a.yaml"), ["path", "nope.jsonl", "does not exist"]),
        (write_config(toy_config(output_dir=str(a_file)), "b.yaml"), ["is a file, not a directory"]),
        (write_config(toy_config(limit=0, output_dir=str(out)), "c.yaml"), ["limit"]),
        (write_config(toy_config(limit=-5, output_dir=str(out)), "d.yaml"), ["limit"]),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((write_config(toy_config(output_dir=str(locked / "out")), "e.yaml"), ["cannot be written"]))
    outcomes = run_batch([[cmd, str(path)] for path, _ in cases for cmd in ("validate", "run")])
    for o, (path, needles) in zip(outcomes, [c for c in cases for _ in (0, 1)]):
        assert_user_error(o, *needles, out_dir=out)
    locked.chmod(0o700)


def test_oversized_fields_follow_one_rule_in_every_loader(tmp_path):
    from harness.datafiles import MAX_FIELD_CHARS, read_json_rows, read_table
    from harness.errors import DatasetUnavailableError

    big = "x" * (MAX_FIELD_CHARS + 1)
    files = {"rows.jsonl": '{"prompt": "%s"}\n' % big, "rows.json": '[{"prompt": "%s"}]' % big,
             "rows.csv": f"prompt\n{big}\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        read = read_table if name.endswith(".csv") else read_json_rows
        with pytest.raises(DatasetUnavailableError, match=f"over {MAX_FIELD_CHARS:,} characters"):
            read(tmp_path / name, "bench", "fix it")
    (tmp_path / "ok.csv").write_text("prompt\n" + "x" * MAX_FIELD_CHARS + "\n")
    assert len(read_table(tmp_path / "ok.csv", "bench", "fix it")[1][0]["prompt"]) == MAX_FIELD_CHARS


def test_a_metric_needing_hidden_states_is_refused_for_an_api_only_model(tmp_path, write_config):
    out = tmp_path / "out"
    cfg = write_config({"zoo": {"api": {"backend": "openai", "openai": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}},
                        "models": ["api"], "benchmarks": ["adversarial-probes"], "output_dir": str(out)})
    for o in run_batch([["validate", str(cfg)]]):
        assert_user_error(o, "avqi@adversarial", "hidden_states", out_dir=out)


_BUILD_AND_HANG = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.zoo.tiny import cached_build

    def build(tmp):
        (tmp / "half-written").write_text("x")
        print("building", flush=True)
        time.sleep(60)

    cached_build(Path(sys.argv[1]), build)
""")


def _start_and_kill(code: str, *args: str, ready: str) -> None:
    """Start `code` in a real subprocess, wait for its `ready` line, then SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None and ready in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_killed_build_leaves_nothing_behind_on_the_next_run(tmp_path):
    from harness.io import current_umask
    from harness.zoo.tiny import cached_build

    target = tmp_path / "zoo" / "toy-0123"
    _start_and_kill(_BUILD_AND_HANG, str(target), ready="building")
    assert [p.name.startswith(".toy-0123-") for p in (tmp_path / "zoo").iterdir() if p.is_dir()] == [True]
    cached_build(target, lambda tmp: (tmp / "model.safetensors").write_text("weights"))
    left = sorted(p.name for p in (tmp_path / "zoo").iterdir() if p.is_dir())
    assert left == ["toy-0123"]  # the killed build's half-written dir is gone
    assert (target.stat().st_mode & 0o777) == 0o777 & ~current_umask()  # not mkdtemp's 0700


_BUILD_SLOWLY = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.zoo.tiny import cached_build

    def build(tmp):
        with open(sys.argv[2], "a") as log:
            log.write("built\\n")
        time.sleep(1.5)
        (tmp / "model.safetensors").write_text("weights")

    print(cached_build(Path(sys.argv[1]), build), flush=True)
""")


def test_two_processes_build_one_recipe_once(tmp_path):
    """Two processes asking for the same model at once: one builds, the other waits and uses it."""
    target, log = tmp_path / "zoo" / "toy-4567", tmp_path / "builds.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_SLOWLY, str(target), str(log)], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == [str(target)] * 2
    assert log.read_text().count("built") == 1
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")) == ["toy-4567"]


_WRITE_AND_HANG = textwrap.dedent("""
    import sys, time, tempfile
    from pathlib import Path

    cell = Path(sys.argv[1])
    cell.mkdir(parents=True, exist_ok=True)
    tempfile.mkstemp(dir=cell, prefix=".summary.json.", suffix=".tmp")   # what atomic_write_text leaves
    tempfile.mkstemp(dir=cell, prefix=".samples.jsonl.", suffix=".tmp")
    print("writing", flush=True)
    time.sleep(60)
""")


@pytest.mark.slow
def test_a_killed_run_leaves_no_temp_files_after_the_next_run(tmp_path, toy_config, write_config):
    cfg = toy_config(methods=["none"], metrics=["probability@forget"], reference=None)
    cell = Path(cfg["output_dir"]) / "toy" / "none" / "fictitious-facts"
    _start_and_kill(_WRITE_AND_HANG, str(cell), ready="writing")
    (Path(cfg["output_dir"]) / ".leaderboard.md.abc.tmp").write_text("half")
    assert len(list(cell.glob(".*.tmp"))) == 2
    o = run_one(["run", str(write_config(cfg))])
    assert o.code == 0, o.stderr[-2000:]
    assert not list(Path(cfg["output_dir"]).rglob("*.tmp"))
    assert (cell / "summary.json").is_file() and "removed 2 unfinished file(s)" in o.stderr
    # the same numbers as a run that was never interrupted
    clean = toy_config(methods=["none"], metrics=["probability@forget"], reference=None,
                       output_dir=str(tmp_path / "clean"))
    assert run_one(["run", str(write_config(clean, "clean.yaml"))]).code == 0
    from harness.results import read_summary

    after_kill = read_summary(cell / "summary.json").metrics
    uninterrupted = read_summary(tmp_path / "clean" / "toy" / "none" / "fictitious-facts" / "summary.json").metrics
    assert {k: v.value for k, v in after_kill.items()} == {k: v.value for k, v in uninterrupted.items()}


@pytest.mark.slow
def test_two_runs_on_one_output_dir_compute_each_cell_once(tmp_path, toy_config, write_config):
    cfg = write_config(toy_config(methods=["none"], metrics=["probability@forget", "truth_ratio@forget"], reference=None))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    cmd = [sys.executable, "-c", "from harness.cli import app; app()", "run", str(cfg)]
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    time.sleep(0.5)
    second = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == second.returncode == 0, [o[1][-1500:] for o in outs]
    text = [o[0] + o[1] for o in outs]
    computed = [len(re.findall(r"^  wrote ", t, re.M)) for t in text]
    skipped = [len(re.findall(r"^finished (by another run|earlier): toy × none", t, re.M)) for t in text]
    assert sorted(computed) == [0, 1] and sorted(skipped) == [0, 1], text
