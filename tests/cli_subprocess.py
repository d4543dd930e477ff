"""Run the CLI as a user does, in a real subprocess, and check the user-error contract:
exit code 2, exactly one `error:` line on stderr, no traceback, no result files.

`run_one` starts the real entry point once per command. `run_batch` runs many commands in
one process (tests/_cli_driver.py: each with its own captured stdout/stderr, an escaping
exception printed as a traceback with exit code 1), so a fuzz test pays Python's start-up
once rather than per input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    args: list[str]
    code: int
    stdout: str
    stderr: str


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(extra or {})}


def run_one(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> Outcome:
    proc = subprocess.run([sys.executable, "-c", "from harness.cli import app; app()", *args], cwd=ROOT, capture_output=True,
                          text=True, env=_env(env), timeout=timeout)
    return Outcome(args, proc.returncode, proc.stdout, proc.stderr)


def run_batch(commands: list[list[str]], env: dict[str, str] | None = None, timeout: float = 300) -> list[Outcome]:
    proc = subprocess.run([sys.executable, "-m", "tests._cli_driver"], cwd=ROOT, input=json.dumps(commands),
                          capture_output=True, text=True, env=_env(env), timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [Outcome(args, r["code"], r["stdout"], r["stderr"]) for args, r in zip(commands, json.loads(proc.stdout))]


def user_error_problems(o: Outcome, out_dir: Path | None = None) -> list[str]:
    """What breaks the contract (empty: it holds)."""
    problems = []
    if o.code != 2:
        problems.append(f"exit code {o.code}")
    if "Traceback" in o.stderr or "Traceback" in o.stdout:
        problems.append("traceback")
    error_lines = [line for line in o.stderr.splitlines() if line.startswith("error:")]
    if len(error_lines) != 1:
        problems.append(f"{len(error_lines)} error: lines")
    if any(ch in o.stderr for ch in "\x1b\x07\u2028\u2029\x85"):
        problems.append("control characters on stderr")
    if out_dir is not None and out_dir.exists() and any(p.is_file() for p in out_dir.rglob("*")):
        problems.append("result files written")
    return problems


def assert_user_error(o: Outcome, *needles: str, out_dir: Path | None = None) -> str:
    problems = user_error_problems(o, out_dir)
    assert not problems, f"{o.args[:3]}: {problems}\nstderr: {o.stderr[-2000:]}"
    [line] = [line for line in o.stderr.splitlines() if line.startswith("error:")]
    for needle in needles:
        assert needle in line, line
    return line
