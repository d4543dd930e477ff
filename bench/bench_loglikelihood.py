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

    .venv/bin/python bench/bench_loglikelihood.py [--n 2100] [--batch-size 64] [--threads 2] [--workload fewshot]
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


def to_instances(requests):
    from lm_eval.api.instance import Instance

    return [Instance(request_type="loglikelihood", doc={}, arguments=(r.context, r.continuation), idx=0,
                     metadata=("bench", i, 1)) for i, r in enumerate(requests)]


def prototype_backend(spec, loaded, batch_size: int):
    """A sketch for hf.py, not used by the harness: HFBackend with tokenisation done up front,
    each distinct context once (7 requests share one here) and all continuations in one
    batched tokenizer call, instead of two tokenizer calls per request. Batching, padding,
    the forward pass and the per-row scoring are HFBackend's own, so the numbers are identical.

    (Vectorising the per-row scoring over the whole batch was tried too and was slower on this
    CPU: that cost is elementwise work over the vocabulary, not Python overhead.)"""
    from harness.backends.hf import HFBackend

    class PrototypeBackend(HFBackend):
        _pre: dict = {}

        def encode_all(self, requests) -> dict:
            ctx_ids: dict = {}
            conts = list(dict.fromkeys(r.continuation for r in requests if r.continuation))
            cont_ids = dict(zip(conts, self.tokenizer(conts, add_special_tokens=False)["input_ids"])) if conts else {}
            limit, out = self._max_len(), {}
            for r in requests:
                key = (r.context, r.system, r.chat)
                if key not in ctx_ids:
                    ctx_ids[key] = self.encode_prompt(r)
                ctx, cont = ctx_ids[key], list(cont_ids.get(r.continuation, []))[: limit - 1]
                ctx = ctx[max(0, len(ctx) + len(cont) - limit):]
                out[r] = (ctx + cont, len(cont))
            return out

        def _encode_pair(self, request):
            hit = self._pre.get(request)
            return hit if hit is not None else super()._encode_pair(request)

        def loglikelihood(self, requests):
            self._pre = self.encode_all(requests) if requests else {}
            try:
                return super().loglikelihood(requests)
            finally:
                self._pre = {}

    return PrototypeBackend(spec, device="cpu", batch_size=batch_size, loaded=loaded)


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
    parser.add_argument("--profile", action="store_true", help="also cProfile one run of ours (top functions)")
    parser.add_argument("--prototype", action="store_true",
                        help="add a row for a sketch of HFBackend with batched, de-duplicated tokenisation")
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

    full: dict[str, list] = {}

    def run_ours(backend, key):
        def run(reqs, inst):
            full[key] = backend.loglikelihood(reqs)
            return [(r.sum, r.greedy) for r in full[key]]
        return run

    plain = HFBackend(spec, device="cpu", batch_size=args.batch_size, loaded=loaded, shared_context=False)
    runners = {"ours": run_ours(ours, "ours"), "plain": run_ours(plain, "plain")}
    if args.prototype:
        runners["prototype"] = run_ours(prototype_backend(spec, loaded, args.batch_size), "prototype")
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
              "default": ("lm-eval HFLM (default)", 1),
              "prototype": ("sketch: HFBackend + batched, de-duplicated tokenisation", args.batch_size)}
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
    if args.prototype:
        fields = ("token_logprobs", "token_greedy", "token_mu", "token_sigma")
        same_len = all(a.n_tokens == b.n_tokens for a, b in zip(full["ours"], full["prototype"]))
        diffs = {f: max((abs(float(x) - float(y)) for a, b in zip(full["ours"], full["prototype"])
                         for x, y in zip(getattr(a, f), getattr(b, f))), default=0.0) for f in fields}
        lines += ["", f"sketch vs ours, per token: same lengths {same_len}; max abs difference "
                  + ", ".join(f"{f} {d:.1e}" for f, d in diffs.items())]
    print("\n".join(lines))

    if args.profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        ours.loglikelihood(requests)
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        total = max(ct for (_, _, fn), (_, _, _, ct, _) in stats.stats.items() if fn == "loglikelihood")
        cum = {}
        for (path, _, fn), (_, _, _, ct, _) in stats.stats.items():
            if path.endswith("harness/backends/hf.py") and fn in ("_encode_pair", "_forward", "score", "_pad"):
                cum[fn] = cum.get(fn, 0.0) + ct
        print("\n## cProfile: one run of ours (profiler overhead included)\n")
        print("| part | seconds | share |\n|---|---:|---:|")
        parts = {
            "tokenisation (`_encode_pair`, 2 tokenizer calls per request)": cum.get("_encode_pair", 0.0),
            "model forward (`_forward` less `_pad`)": cum.get("_forward", 0.0) - cum.get("_pad", 0.0),
            "padding (`_pad`)": cum.get("_pad", 0.0),
            "per-row statistics in `score` (log_softmax, mu, sigma, gather, tolist)": cum.get("score", 0.0) - cum.get("_forward", 0.0),
        }
        parts["other (sorting, batching loop, progress)"] = total - sum(parts.values())
        for name, sec in parts.items():
            print(f"| {name} | {sec:.2f} | {sec / total:.0%} |")
        print(f"| total `loglikelihood` | {total:.2f} | 100% |")
        stats.sort_stats("tottime").print_stats(15)
        print("\ntop 15 by own time:\n\n```")
        print(buf.getvalue().strip())
        print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
