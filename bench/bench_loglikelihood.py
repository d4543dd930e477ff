"""Loglikelihood throughput: this harness's HFBackend vs lm-evaluation-harness's HFLM.

One run times the same N requests on the built-in `tiny-facts` model (one in-memory model
shared by both sides) through:
  (a) HFBackend, no response cache, batch size B: with shared-context scoring (the default:
      each distinct context forwarded once, harness/backends/shared_context.py) and without;
  (b) lm-eval HFLM with batch size B (equal to ours), and with its default batch size (1).
Each configuration is warmed up once, then timed `--repeats` times, interleaved (so drift in
the machine's load hits every row alike); the table reports the median. It also reports the
max |delta loglikelihood| and greedy-flag agreement against ours.

Default requests: every item of fictitious-facts forget10 + retain_perturbed + holdout10,
each with 7 continuations (answer, paraphrase, 5 perturbed): 300 x 7 = 2,100 requests.
`--workload fewshot` puts 5 other questions with their answers before each question (a
longer shared context, as few-shot prompts have). Building tiny-facts the first time takes
about 70 s (cached afterwards).

    .venv/bin/python bench/bench_loglikelihood.py [--n 2100] [--batch-size 64] [--threads 2] [--workload fewshot] [--profile]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SPLITS = ("forget10", "retain_perturbed", "holdout10")


def build_requests(n: int | None, workload: str = "tofu"):
    from harness.benchmarks.fictitious_facts import FictitiousFacts
    from harness.api.requests import LoglikelihoodRequest

    bench = FictitiousFacts()
    items = [item for split in SPLITS for item in bench.split(split)]

    def context(k: int) -> str:
        if workload == "tofu":
            return bench.prompt(items[k])
        shots = [items[(k + j) % len(items)] for j in range(1, 6)]  # 5 other QAs first
        return "".join(bench.prompt(s) + bench.target(s.answer) + "\n\n" for s in shots) + bench.prompt(items[k])

    reqs = [
        LoglikelihoodRequest(context=context(k), continuation=bench.target(ans), chat=False)
        for k, item in enumerate(items)
        for ans in (item.answer, item.paraphrased_answer, *item.perturbed_answers)
    ]
    if n is not None:
        if n > len(reqs):  # cycle: more requests than the splits hold
            reqs = [reqs[i % len(reqs)] for i in range(n)]
        reqs = reqs[:n]
    return reqs


def profile_parts(backend, model, requests, repeats: int) -> str:
    """Where our time goes, without a profiler's overhead: the parts wrapped with timers over
    `repeats` runs (medians): tokenisation (`_encode_pairs`), the model's forward calls, and the
    per-token statistics (`token_stats_many`); the rest is grouping, masks and batching."""
    from harness.backends import hf_loglikelihood

    spent: dict[str, float] = {}

    def timed(name, fn):
        def run(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return run

    parts = {"tokenisation": [], "model forward": [], "per-token statistics": [], "total": []}
    real_encode, real_forward, real_stats = backend._encode_pairs, model.forward, hf_loglikelihood.token_stats_many
    backend._encode_pairs = timed("tokenisation", real_encode)
    model.forward = timed("model forward", real_forward)
    hf_loglikelihood.token_stats_many = timed("per-token statistics", real_stats)
    try:
        for _ in range(repeats):
            spent.clear()
            start = time.perf_counter()
            backend.loglikelihood(requests)
            spent["total"] = time.perf_counter() - start
            for name in parts:
                parts[name].append(spent.get(name, 0.0))
    finally:
        del backend._encode_pairs, model.forward  # back to the class's own methods
        hf_loglikelihood.token_stats_many = real_stats
    med = {name: statistics.median(v) for name, v in parts.items()}
    med["other (grouping, masks, batching)"] = med["total"] - sum(v for k, v in med.items() if k != "total")
    rows = [f"| {name} | {sec:.3f} | {sec / med['total']:.0%} |" for name, sec in med.items() if name != "total"]
    return "\n".join([f"## Our time, by part (median of {repeats})", "", "| part | seconds | share |", "|---|---:|---:|",
                      *rows, f"| total | {med['total']:.3f} | 100% |"])


def to_instances(requests):
    from lm_eval.api.instance import Instance

    return [Instance(request_type="loglikelihood", doc={}, arguments=(r.context, r.continuation), idx=0,
                     metadata=("bench", i, 1)) for i, r in enumerate(requests)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="number of requests (default: all 2,100)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="batch size for ours and for lm-eval's matched row (default 64 = our 'auto' on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration; the median is reported")
    parser.add_argument("--model", default="tiny-facts", help="zoo model name (default tiny-facts)")
    parser.add_argument("--workload", choices=("tofu", "fewshot"), default="tofu",
                        help="tofu: the question as context; fewshot: 5 answered questions before it")
    parser.add_argument("--no-default", action="store_true", help="skip the lm-eval default-batch-size row")
    parser.add_argument("--profile", action="store_true",
                        help="also time the parts of our runs: tokenisation, model forward, per-token statistics")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)

    from lm_eval.models.huggingface import HFLM
    import lm_eval
    import transformers

    from harness.backends.hf import HFBackend
    from harness.zoo.load import load_hf_model
    from harness.zoo.specs import ModelZoo

    spec = ModelZoo().get(args.model)
    t0 = time.perf_counter()
    loaded = load_hf_model(spec, device="cpu")
    load_s = time.perf_counter() - t0
    requests = build_requests(args.n, args.workload)
    instances = to_instances(requests)

    ours = HFBackend(spec, device="cpu", batch_size=args.batch_size, loaded=loaded)
    n_tokens = sum(len(ours._encode_pair(r)[0]) for r in requests)
    # BOS explicitly, as ours (see tests/test_lm_eval_parity.py): both sides score the same ids.
    theirs = {"matched": HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=args.batch_size,
                              add_bos_token=True)}
    if not args.no_default:
        theirs["default"] = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, add_bos_token=True)

    def run_ours(backend):
        def run(reqs, inst):
            return [(r.sum, r.greedy) for r in backend.loglikelihood(reqs)]
        return run

    plain = HFBackend(spec, device="cpu", batch_size=args.batch_size, loaded=loaded, shared_context=False)
    runners = {"ours": run_ours(ours), "plain": run_ours(plain)}
    for key, lm in theirs.items():
        runners[key] = lambda reqs, inst, lm=lm: lm.loglikelihood(inst, disable_tqdm=True)

    warm = min(len(requests), 2 * args.batch_size)
    for run in runners.values():  # warm-up once: allocator, kernels, lazy state
        run(requests[:warm], instances[:warm])

    times: dict[str, list[float]] = {k: [] for k in runners}
    results: dict[str, list] = {}
    for _ in range(args.repeats):
        for key, run in runners.items():
            start = time.perf_counter()
            out = run(requests, instances)
            times[key].append(time.perf_counter() - start)
            results[key] = out

    base = results["ours"]
    labels = {"ours": ("this harness (HFBackend, shared context)", args.batch_size),
              "plain": ("this harness, shared context off", args.batch_size),
              "matched": ("lm-eval HFLM", args.batch_size),
              "default": ("lm-eval HFLM (default)", 1)}
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        f"model `{args.model}` ({sum(p.numel() for p in loaded.model.parameters()):,} params, {str(next(loaded.model.parameters()).dtype).removeprefix('torch.')}, CPU), "
        f"{len(requests):,} requests, {n_tokens:,} tokens (BOS + context + continuation, unpadded), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, transformers {transformers.__version__}, "
        f"lm-eval {lm_eval.__version__ if hasattr(lm_eval, '__version__') else '?'}, "
        f"{platform.machine()} {os.cpu_count()} cores; median of {args.repeats} (model load {load_s:.1f} s, untimed)",
        "",
        "| backend | batch size | time (s) | runs (s) | requests/s | tokens/s | ours faster by | max abs Δ loglik vs ours | greedy flags equal |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for key in runners:
        name, bs = labels[key]
        t = med[key]
        delta = max(abs(a[0] - b[0]) for a, b in zip(base, results[key]))
        same = sum(a[1] == b[1] for a, b in zip(base, results[key]))
        ratio = "—" if key == "ours" else f"{t / med['ours']:.2f}×"
        lines.append(
            f"| {name} | {bs} | {t:.2f} | {', '.join(f'{x:.2f}' for x in times[key])} | {len(requests) / t:,.0f} | "
            f"{n_tokens / t:,.0f} | {ratio} | {'—' if key == 'ours' else f'{delta:.2e}'} | "
            f"{'—' if key == 'ours' else f'{same}/{len(requests)}'} |"
        )
    print("\n".join(lines))

    if args.profile:
        print("\n" + profile_parts(ours, loaded.model, requests, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
