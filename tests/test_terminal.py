"""The terminal as a researcher uses it (issue 17), through the real CLI in a subprocess."""

from __future__ import annotations

from pathlib import Path

from tests.cli_subprocess import run_one


def _header(stdout: str, title: str = "Leaderboard: fictitious-facts") -> list[str]:
    """The metric column names (arrow and n dropped) of the table titled `title`."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    row = next(line for line in lines[start:] if "┃ model" in line)
    cells = [c.strip() for c in row.strip("┃ ").split("┃")]
    return [c.split(" ")[0] for c in cells[2:]]


def test_terminal_shows_the_metrics_asked_for_sorted_like_the_files(toy_config, write_config, tmp_path: Path) -> None:
    cfg = write_config(toy_config(metrics=["probability@forget", "forget_quality"]))
    out = run_one(["run", str(cfg)], env={"COLUMNS": "250"})
    assert out.code == 0, out.stderr[-2000:]
    assert _header(out.stdout) == ["probability@forget", "forget_quality"]
    assert "Sorted by probability@forget" in out.stdout
    assert "Showing 2 of 3 metrics (those asked for)" in out.stdout  # truth_ratio came as a dependency
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Sorted by probability@forget" in md

    again = run_one(["leaderboard", str(tmp_path / "out"), "--sort-by", "forget_quality"], env={"COLUMNS": "250"})
    assert again.code == 0, again.stderr[-2000:]
    assert _header(again.stdout) == ["forget_quality", "probability@forget"]
    assert "Sorted by forget_quality" in again.stdout
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Sorted by forget\\_quality" in md
    assert md.index("forget\\_quality ↑") < md.index("probability@forget ↓")  # sort column first in the file too


def test_a_missing_reference_is_warned_before_and_explained_after(toy_config, write_config, tmp_path: Path) -> None:
    cfg = write_config(toy_config(metrics=["probability@forget", "forget_quality"], reference=None))
    checked = run_one(["validate", str(cfg)])
    assert checked.code == 0, checked.stderr[-2000:]
    assert "warning: metric 'forget_quality' needs a reference run" in checked.stderr

    out = run_one(["run", str(cfg)], env={"COLUMNS": "400"})
    assert out.code == 0, out.stderr[-2000:]
    assert out.stderr.index("warning: metric 'forget_quality'") < out.stderr.index("evaluating")  # before any work
    words = " ".join(out.stdout.split())  # the caption wraps at the table's width
    assert "forget_quality —: no retain-only reference run; give `--reference MODEL`" in words  # under the table
    assert "forget\\_quality —: no retain-only reference run" in (tmp_path / "out" / "leaderboard.md").read_text()

    fixed = run_one(["run", str(cfg), "--reference", "toy-retain", "-o", str(tmp_path / "ref")], env={"COLUMNS": "400"})
    assert fixed.code == 0, fixed.stderr[-2000:]
    assert "warning:" not in fixed.stderr
    rows = [line for line in fixed.stdout.splitlines() if line.startswith("│ toy ")]
    assert len(rows) == 1 and "—" not in rows[0], fixed.stdout  # forget_quality has a value
    assert "this row is the reference run" in " ".join(fixed.stdout.split())  # the reference's own row says why it is empty


def test_typos_are_caught_before_any_model_loads(toy_config, write_config, tmp_path: Path) -> None:
    """A metric's split, a role through a split option, a benchmark option and a judge role:
    each is refused by `validate` and by `run` (before building or loading a model), with a hint."""
    from tests.cli_subprocess import assert_user_error, run_batch

    bench = {"name": "fictitious-facts", "params": {"forget_split": "forget10"}}
    cases = {
        "split": (dict(metrics=["probability@forgettt"]), "did you mean 'forget'"),
        "role": (dict(benchmarks=[{**bench, "params": {"forget_split": "forget5"}}], metrics=["probability@forget"]),
                 "did you mean 'forget05'"),
        "option": (dict(benchmarks=[{**bench, "params": {"forget_splt": "forget05"}}]), "did you mean 'forget_split'"),
        "judge role": (dict(judges={"hram": {"kind": "refusal-patterns"}}), "did you mean 'harm'"),
    }
    commands, dirs = [], []
    for i, (over, _) in enumerate(cases.values()):
        out_dir = tmp_path / f"out{i}"
        path = write_config(toy_config(output_dir=str(out_dir), **over), name=f"case{i}.yaml")
        commands += [["validate", str(path)], ["run", str(path)]]
        dirs += [None, out_dir]
    outcomes = run_batch(commands)
    for (name, (_, hint)), checked, ran, out_dir in zip(cases.items(), outcomes[::2], outcomes[1::2], dirs[1::2]):
        assert hint in assert_user_error(checked), name
        assert hint in assert_user_error(ran, out_dir=out_dir), name
        assert "evaluating" not in ran.stderr and "building" not in ran.stderr.lower(), name


def test_every_option_is_discoverable_from_the_terminal() -> None:
    from tests.cli_subprocess import assert_user_error, run_batch

    method, bench, metric, privleak, typo = run_batch(
        [["ls", "methods", "npo"], ["show", "fictitious-facts"], ["show", "mia_loss"], ["ls", "metrics", "privleak"],
         ["show", "nppo"]], env={"COLUMNS": "250"})
    assert method.code == 0, method.stderr
    beta = next(line for line in method.stdout.splitlines() if "│ beta " in line)
    assert "float" in beta and "0.1" in beta and "inverse temperature" in beta
    assert "Negative preference optimisation" in method.stdout  # the docstring describes it
    words = " ".join(bench.stdout.split())
    for needle in ("forget05 (50)", "forget -> forget10", "retain -> retain_perturbed", "forget_split:",
                   "default metrics probability@forget"):
        assert needle in words, needle
    assert "best at 0.5" in metric.stdout and "no split" in metric.stdout
    assert "best at 0" in privleak.stdout
    assert "did you mean 'npo'" in assert_user_error(typo)


def test_every_metric_declares_its_direction() -> None:
    from harness.catalog import METRICS

    silent = [name for name in METRICS.names() if not METRICS.get(name).direction()]
    assert not silent, f"metrics with no direction: {silent}"


MY_METHOD = '''
from pathlib import Path

from harness.methods.grad_ascent import GradAscent


class MyAscent(GradAscent):
    """Gradient ascent, from a module that is not a package."""


def not_a_method(**kwargs):
    Path(__file__).with_name("called").write_text("called")
'''


def test_options_beyond_methods_from_the_command_line(toy_config, write_config, tmp_path: Path) -> None:
    """`-p BENCHMARK.OPTION=...`, `--model-args`, and a method named `module:Class` (a subclass of
    Method only: anything else is refused before it is called)."""
    import json

    from tests.cli_subprocess import ROOT, assert_user_error, run_batch

    (tmp_path / "my_method.py").write_text(MY_METHOD)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    cfg = write_config(toy_config(reference=None, metrics=["probability@forget"]))
    out = tmp_path / "out"
    ok, not_class, missing, bad_arg, bad_target = run_batch([
        ["run", str(cfg), "--method", "my_method:MyAscent", "-p", "my_method:MyAscent.max_steps=1",
         "-p", "fictitious-facts.forget_split=forget05", "--model-args", "dtype=float32,chat_template=none"],
        ["run", str(cfg), "--method", "my_method:not_a_method", "-o", str(tmp_path / "o1")],
        ["run", str(cfg), "--method", "no_such_module:X", "-o", str(tmp_path / "o2")],
        ["run", str(cfg), "--model-args", "dtyp=float32", "-o", str(tmp_path / "o3")],
        ["run", str(cfg), "-p", "fictitous-facts.limit=1", "-o", str(tmp_path / "o4")],
    ], env=env)
    assert ok.code == 0, ok.stderr[-3000:]
    [summary] = (out / "toy").glob("*/fictitious-facts/summary.json")
    data = json.loads(summary.read_text())
    assert data["method"] == "my_method:MyAscent"
    assert data["provenance"]["benchmark_options"]["forget_split"] == "forget05"
    assert data["provenance"]["method_hparams"]["max_steps"] == 1
    assert "a config may name only a method class" in assert_user_error(not_class, out_dir=tmp_path / "o1")
    assert not (tmp_path / "called").exists()  # checked before anything is called
    assert "cannot import 'no_such_module'" in assert_user_error(missing, out_dir=tmp_path / "o2")
    assert "did you mean 'dtype'" in assert_user_error(bad_arg, out_dir=tmp_path / "o3")
    assert "did you mean 'fictitious-facts'" in assert_user_error(bad_target, out_dir=tmp_path / "o4")


def test_model_args_replace_fields_of_the_spec() -> None:
    from harness.cli import _with_model_args

    zoo = _with_model_args(["tiny-facts", "org/model"], {}, "dtype=bfloat16,revision=1234567,chat_template=none")
    assert zoo["tiny-facts"]["builder"] == "tiny-facts" and zoo["tiny-facts"]["dtype"] == "bfloat16"
    assert zoo["org/model"] == {**zoo["org/model"], "path": "org/model", "revision": "1234567", "chat_template": "none"}


def _run_on_a_terminal(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """The CLI with stderr on a pseudo-terminal (so HF Trainer shows its bar, as for a user); its
    stdout and stderr together."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    from tests.cli_subprocess import ROOT, _env

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", "from harness.cli import app; app()", *args], cwd=ROOT,
                            stdout=slave, stderr=slave, env=_env({"COLUMNS": "200"}))
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_progress_on_the_terminal_and_trainer_noise_in_the_log(toy_config, write_config, tmp_path: Path) -> None:
    cfg = write_config(toy_config(reference=None, metrics=["probability@forget"],
                                  methods=["none", {"name": "grad-ascent", "params": {"max_steps": 3, "logging_steps": 1}}]))
    code, seen = _run_on_a_terminal(["run", str(cfg)])
    assert code == 0, seen[-3000:]
    assert "cell 1/2" in seen and "cell 2/2" in seen and "(ETA " in seen  # the second one has an estimate
    assert "'loss'" not in seen and "Warning" not in seen, seen[-3000:]  # neither dicts nor library warnings
    log = (tmp_path / "out" / "run.log").read_text()
    assert "'loss'" in log and "harness.training" in log


def test_markdown_is_the_benchmark_views_each_narrow_and_the_csv_keeps_everything(tmp_path: Path) -> None:
    """40 metrics: the Markdown holds the headline and each view (no table wider than
    MAX_COLUMNS metrics), the terminal prints the same tables, the CSV every metric."""
    import pandas as pd

    from harness.reports.tables import MAX_COLUMNS
    from harness.results import MetricValue, Provenance, ReportLayout, RunSummary, cell_dir, write_cell

    names = [f"m{i:02d}@forget" for i in range(20)] + [f"relearn_recovery:m{i:02d}@forget" for i in range(12)] + \
        [f"representation:cka{i}@forget" for i in range(8)]
    layout = ReportLayout(headline=names[:5], views={"attacks": ["relearn_recovery:*"],
                                                     "deleted or hidden?": ["representation:*"]})
    root = tmp_path / "results"
    for method, shift in (("none", 0.0), ("npo", 0.1)):
        summary = RunSummary(model="toy", method=method, benchmark="bench",
                             metrics={m: MetricValue(value=0.5 + shift, n=10, higher_is_better=False) for m in names},
                             provenance=Provenance(config_hash="c" * 64, harness_version="0", seed=0), layout=layout)
        write_cell(cell_dir(root, "toy", method, "bench"), summary, [])
    out = run_one(["leaderboard", str(root)], env={"COLUMNS": "400"})
    assert out.code == 0, out.stderr
    md = (root / "leaderboard.md").read_text()
    titles = [line for line in md.splitlines() if line.startswith("## ")]
    assert titles == ["## Leaderboard: bench", "## bench: attacks (1/2)", "## bench: attacks (2/2)",
                      "## bench: deleted or hidden?", "## Provenance"]
    widths = [line.count(" | ") - 1 for line in md.splitlines() if line.startswith("| model")]
    assert max(widths) <= MAX_COLUMNS, widths
    for title in titles[:-1]:
        assert title[3:].replace("\\", "") in out.stdout  # the terminal shows the same tables
    csv = pd.read_csv(root / "leaderboard.csv")
    assert all(m in csv.columns for m in names)  # every metric is kept in the CSV


def test_the_readme_example_shows_every_metric_it_asks_for_with_a_value(tmp_path: Path) -> None:
    """The README's `harness run --model ...` line, run as written (output dir moved to tmp)."""
    import re
    import shlex

    from tests.cli_subprocess import ROOT

    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^harness run --model .*?(?<!\\)$", readme, re.S | re.M).group(0)
    args = shlex.split(command.replace("\\\n", " "))[1:]
    asked = args[args.index("--metrics") + 1].split(",")
    args[args.index("-o") + 1] = str(tmp_path / "x")
    out = run_one(args, env={"COLUMNS": "300"}, timeout=900)
    assert out.code == 0, out.stderr[-3000:]
    assert "warning:" not in out.stderr
    assert [c for c in _header(out.stdout)] == asked
    rows = [line for line in out.stdout.splitlines() if line.startswith("│ tiny-facts ")]
    assert len(rows) == 2 and all("—" not in row for row in rows), out.stdout  # none and npo: every value
