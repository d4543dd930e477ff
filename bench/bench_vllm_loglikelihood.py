"""Log-likelihood scoring through vLLM's prompt log-probs vs the HF backend, on the same requests.

Run in the vLLM virtualenv (`make vllm-venv`), where both backends import. The requests are
bench_loglikelihood.py's (TOFU-style: 7 continuations per question; `--workload fewshot`: a
longer shared prefix). Rows: HFBackend with and without shared-context scoring, VLLMBackend with
prefix caching on (each context's KV blocks computed once and reused by its continuations) and
off. Parity is against the HF shared-context row: max |Δ| of summed log-likelihoods and equal
greedy flags. Routing's default for `loglikelihood` (harness/backends/routing.py) follows this
measurement (docs/benchmarks.md).

    ~/.cache/llm-safety-harness/venv-vllm/bin/python bench/bench_vllm_loglikelihood.py [--n 700] [--workload tofu]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loglikelihood import build_requests  # noqa: E402
from common import machine, markdown_table, median, timed, write_json  # noqa: E402

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=700)
    parser.add_argument("--workload", choices=("tofu", "fewshot"), default="tofu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from harness.backends.hf import HFBackend
    from harness.backends.vllm import VLLMBackend, shutdown_engine
    from harness.zoo.load import load_hf_model
    from harness.zoo.specs import ModelZoo, VLLMSettings

    base = ModelZoo().get("tiny-facts")
    spec = base.model_copy(update={"dtype": "float32", "path": base.resolve_path(), "builder": None})
    requests = build_requests(args.n, args.workload)
    loaded = load_hf_model(spec, device="cpu")
    rows: dict[str, dict] = {}
    outs: dict[str, list] = {}

    def measure(name: str, fn) -> None:
        times, out = timed(fn, args.repeats)
        outs[name] = out
        rows[name] = {"seconds": median(times), "runs": [round(t, 3) for t in times],
                      "requests_per_s": len(requests) / median(times)}

    for shared in (True, False):
        hf = HFBackend(spec, device="cpu", batch_size=args.batch_size, loaded=loaded, shared_context=shared)
        measure(f"hf (shared context {'on' if shared else 'off'})", lambda hf=hf: hf.loglikelihood(requests))
    for caching in (True, False):
        vspec = spec.model_copy(update={"vllm": VLLMSettings(max_model_len=256, enable_prefix_caching=caching,
                                                             engine_args={"enforce_eager": True})})
        vb = VLLMBackend(vspec)
        measure(f"vllm (prefix caching {'on' if caching else 'off'})", lambda vb=vb: vb.loglikelihood(requests))
        shutdown_engine()

    ref = outs["hf (shared context on)"]
    table = []
    for name, row in rows.items():
        delta = max(abs(a.sum - b.sum) for a, b in zip(ref, outs[name]))
        same = sum(a.greedy == b.greedy for a, b in zip(ref, outs[name]))
        row.update(max_abs_delta=delta, greedy_equal=same)
        table.append([name, row["seconds"], ", ".join(f"{t:.2f}" for t in row["runs"]), row["requests_per_s"],
                      rows["hf (shared context on)"]["seconds"] / row["seconds"], delta, f"{same}/{len(requests)}"])
    print(f"{len(requests)} {args.workload} requests on tiny-facts, batch size {args.batch_size}, "
          f"median of {args.repeats}")
    print(markdown_table(["backend", "time (s)", "runs (s)", "requests/s", "speed vs hf shared", "max abs Δ",
                          "greedy equal"], table))
    result = {"machine": machine(), "workload": args.workload, "n": len(requests), "rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
