"""The demo (`harness run`, no arguments): a cold run vs a cached rerun, wall time and peak memory.

Runs the demo three times in child processes, with the same output dir and response cache:
  cold   - a fresh HARNESS_CACHE_DIR: the tiny models are built, every method is trained,
           every response is computed (`--models-from DIR` copies already built tiny models
           from DIR/zoo instead, so "cold" then means an empty response cache only);
  rerun  - the same command again: the finished cells are taken as they are;
  forced - again with --force: every cell recomputed, every response from the cache.
Peak memory is the child's own max RSS (os.wait4), model calls are the cache misses the
result summaries record, summed over all cells.

Goals (docs/benchmarks.md): rerun >= 20x faster than cold; the forced rerun makes zero model
calls; cold run under 5 minutes (issue 19: 3 min 30 s) and under 4 GiB.

    .venv/bin/python bench/bench_demo.py [--limit N] [--models-from .harness-cache/test] [--json out.json]

`--limit` (items per split), `--models-from` and `--config` (time any experiment YAML
instead of the demo) make a quick check of the script itself; the documented numbers come
from a full demo run on an idle machine without them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, markdown_table, write_json  # noqa: E402

CLI = "import sys; from harness.cli import app; sys.argv[0] = 'harness'; app()"
GOALS = {"rerun_speedup": 20.0, "cold_wall_s": 300.0, "cold_peak_gib": 4.0}


def run_phase(args: list[str], env: dict[str, str], log: Path) -> dict:
    """Run `harness <args>` as a child; its wall time, own peak RSS and exit code."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", CLI, *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed ({proc.returncode}); see {log}")
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"wall_s": wall, "peak_rss_gib": peak / 2**30, "log": str(log)}


def model_calls(output_dir: Path) -> dict[str, int]:
    from harness.results import find_summaries, read_summary

    summaries = [read_summary(p) for p in find_summaries(output_dir)]
    return {"cells": len(summaries), "misses": sum(s.cache.misses for s in summaries),
            "hits": sum(s.cache.hits for s in summaries)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="items per split (quick check; default: the full demo)")
    ap.add_argument("--config", default=None, help="time this experiment YAML instead of the demo")
    ap.add_argument("--models-from", default=None, help="copy built tiny models from this cache dir's zoo/")
    ap.add_argument("--workdir", default=None, help="where the cache and results go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-demo-"))
    cache, out = work / "cache", work / "results"
    for d in (cache, out):
        if d.exists():
            shutil.rmtree(d)
    cache.mkdir(parents=True)
    if args.models_from:
        # Finished builds only: skip other processes' in-progress temp dirs and logs.
        shutil.copytree(Path(args.models_from) / "zoo", cache / "zoo", ignore=shutil.ignore_patterns(".*", "*.log"))
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    cmd = ["run", *([str(Path(args.config).resolve())] if args.config else []), "--output-dir", str(out)]
    # --limit cuts evaluation only; the quick check shrinks the methods' training data too.
    cmd += ["--limit", str(args.limit), "--train-limit", str(args.limit)] if args.limit else []

    phases = {}
    # "rerun" skips the finished cells (what a user's second `harness run` does); "forced"
    # recomputes every cell (--force) from the response cache, so its summaries count its own
    # model calls (a skipped cell's files keep the cold run's counts).
    for phase in ("cold", "rerun", "forced"):
        args_ = cmd + (["--force"] if phase == "forced" else [])
        print(f"{phase}: harness {' '.join(args_)}", file=sys.stderr)
        phases[phase] = {**run_phase(args_, env, work / f"{phase}.log"), **model_calls(out)}
    cold, rerun = phases["cold"], phases["rerun"]
    speedup = cold["wall_s"] / rerun["wall_s"]
    met = {
        "rerun_speedup": speedup >= GOALS["rerun_speedup"],
        "forced_rerun_no_model_calls": phases["forced"]["misses"] == 0,
        "cold_wall_s": cold["wall_s"] < GOALS["cold_wall_s"],
        "cold_peak_gib": cold["peak_rss_gib"] < GOALS["cold_peak_gib"],
    }
    result = {"benchmark": "demo", "config": args.config or "demo", "limit": args.limit, "models_prebuilt": bool(args.models_from),
              "machine": machine(), "results": phases, "rerun_speedup": speedup, "goals": GOALS, "met": met,
              "workdir": str(work)}
    rows = [[name, f"{p['wall_s']:.1f}", f"{p['peak_rss_gib']:.2f}", p["cells"], p["misses"], p["hits"]]
            for name, p in phases.items()]
    print(markdown_table(["run", "wall (s)", "peak RSS (GiB)", "cells", "model calls (misses)", "cache hits"], rows))
    print(f"rerun {speedup:.1f}x faster than cold; goals met: "
          + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in met.items()))
    write_json(args.json, result)
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
