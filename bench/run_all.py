"""Run every performance benchmark and collect their JSON results in one directory.

  1. generation: naive per-prompt HF loop vs batched HFBackend (this venv), then, when the
     vLLM virtualenv (.venv-vllm, `make vllm-venv`) exists, all three side by side in it;
  2+3. the demo: cold run vs cached rerun, wall time and peak memory;
  4. hidden-state metrics: one shared forward pass vs one pass per metric.
(The loglikelihood comparison with lm-evaluation-harness is bench/bench_loglikelihood.py.)

    .venv/bin/python bench/run_all.py [--quick] [--out results/bench] [--skip demo,vllm]

`--quick` uses small sizes (a check of the scripts, numbers not for the docs): 32 prompts,
100 texts, the demo with --limit 2 on prebuilt tiny models. The full run takes about 10
minutes on an idle 2-core machine, most of it the cold demo.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / time.strftime("%Y%m%d-%H%M%S")))
    ap.add_argument("--skip", default="", help="comma-separated: generation, vllm, demo, hidden_states")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for generation/hidden states")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    threads = ["--threads", str(args.threads)] if args.threads else []
    gen = (["--n", "32", "--max-new-tokens", "16", "--repeats", "1"] if args.quick
           else ["--n", "256", "--max-new-tokens", "32", "--repeats", "3"])
    steps: list[tuple[str, list[str]]] = []
    if "generation" not in skip:
        steps.append(("generation", [sys.executable, "bench/bench_generation.py", "--backends", "naive,hf", *gen,
                                     *threads, "--json", str(out / "generation.json")]))
    if "hidden_states" not in skip:
        hs = ["--n", "100", "--repeats", "1"] if args.quick else ["--n", "200", "--repeats", "3"]
        steps.append(("hidden_states", [sys.executable, "bench/bench_hidden_states.py", *hs, *threads,
                                        "--json", str(out / "hidden_states.json")]))
    if "demo" not in skip:
        quick = ["--limit", "2", "--models-from", str(ROOT / ".harness-cache" / "test")] if args.quick else []
        steps.append(("demo", [sys.executable, "bench/bench_demo.py", *quick, "--json", str(out / "demo.json")]))
    if "vllm" not in skip:
        if VLLM_PYTHON.exists():
            steps.append(("generation_vllm", [str(VLLM_PYTHON), "bench/bench_generation.py", *gen, *threads,
                                              "--json", str(out / "generation_vllm.json")]))
        else:
            (out / "generation_vllm.json").write_text(json.dumps(
                {"benchmark": "generation", "not_measured": {"vllm": f"{VLLM_PYTHON} not found (make vllm-venv)"}},
                indent=2) + "\n")

    failed = []
    for name, cmd in steps:
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        code = subprocess.call(cmd, cwd=ROOT)
        if code != 0:
            failed.append(name)
            print(f"== {name} failed with exit code {code}", flush=True)
    print(f"results in {out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
