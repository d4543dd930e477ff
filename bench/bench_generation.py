"""Greedy generation throughput: naive per-prompt HF loop vs the batched HFBackend vs VLLMBackend.

The same N prompts (fictitious-facts questions, cycled to N) and the same token ids go to:
  naive  - plain `model.generate` on one prompt at a time (what a first script does);
  hf     - this harness's HFBackend: length-sorted, left-padded batches of `--batch-size`;
  vllm   - this harness's VLLMBackend (vLLM's in-process engine), when vLLM imports.
No response cache anywhere: every row is model work. Each backend is warmed up once, then
timed `--repeats` times; the table gives the median. tokens/s counts generated tokens up to
(not including) EOS, as `GenerateResponse.n_tokens` does; ratios are ratios of tokens/s.
"same text" counts prompts whose greedy completion equals the naive loop's (batching must
not change answers).

Goal (docs/benchmarks.md): batched HF >= 8x the naive loop.

    .venv/bin/python bench/bench_generation.py [--model tiny-facts] [--n 128] [--max-new-tokens 32]
        [--batch-size 64] [--device cpu] [--backends naive,hf,vllm] [--json out.json]

`--model` takes a zoo name or a local path / hub id (GPU variant: bench/gpu_generation.sh).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, median, timed, write_json  # noqa: E402

SPLITS = ("forget10", "retain_perturbed", "holdout10")
BACKENDS = ("naive", "hf", "vllm")


def model_spec(model: str, dtype: str):
    """A zoo name as the zoo defines it, else a path or hub id with its own chat template."""
    from harness.zoo.specs import ModelSpec, ModelZoo

    zoo = ModelZoo()
    if model in zoo.specs:
        spec = zoo.get(model)
        return spec if dtype == "auto" else spec.model_copy(update={"dtype": dtype})
    return ModelSpec(name=Path(model).name or model, path=model, dtype=dtype)


def build_requests(n: int, max_new_tokens: int):
    from harness.benchmarks.fictitious_facts import FictitiousFacts
    from harness.api.requests import GenerateRequest

    bench = FictitiousFacts()
    prompts = [bench.prompt(item) for split in SPLITS for item in bench.split(split)]
    return [GenerateRequest(prompt=prompts[i % len(prompts)], max_new_tokens=max_new_tokens) for i in range(n)]


def naive_generate(loaded, prompt_ids: list[list[int]], max_new_tokens: int) -> list[tuple[str, int]]:
    """One `model.generate` per prompt, greedy, no padding: the baseline a batched backend must beat."""
    import torch
    from transformers import GenerationConfig

    model, tok = loaded.model, loaded.tokenizer
    eos = getattr(model.generation_config, "eos_token_id", None) or tok.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos_ids), 0)
    gc = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(eos_ids) or None,
                          pad_token_id=pad, bos_token_id=tok.bos_token_id)
    out = []
    with torch.inference_mode():
        for ids in prompt_ids:
            x = torch.tensor([ids], device=loaded.device)
            row = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=gc)[0, len(ids):]
            row = row.tolist()
            end = next((k for k, t in enumerate(row) if t in eos_ids), len(row))
            out.append((tok.decode(row[:end], skip_special_tokens=True), end))
    return out


def vllm_available() -> str | None:
    """None when vLLM imports, else why not (recorded in the results)."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # ImportError, or a broken build raising something else
        return f"vLLM not importable in {sys.executable}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-facts")
    ap.add_argument("--n", type=int, default=128, help="number of prompts")
    ap.add_argument("--naive-n", type=int, default=None,
                    help="time the naive loop on the first K prompts only (slow models); ratios use tokens/s")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64, help="HFBackend batch size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    import torch

    from harness.backends.hf import HFBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(wanted) - set(BACKENDS)
    if unknown:
        ap.error(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")

    spec = model_spec(args.model, args.dtype)
    requests = build_requests(args.n, args.max_new_tokens)
    hf = HFBackend(spec, device=args.device, batch_size=args.batch_size)
    prompt_ids = [hf.encode_prompt(r) for r in requests]
    loaded = hf.loaded  # load outside the timings; naive shares the same in-memory model
    rows: dict[str, dict] = {}
    outputs: dict[str, list[tuple[str, int]]] = {}

    def record(name: str, times: list[float], outs: list[tuple[str, int]]) -> None:
        tokens = sum(n for _, n in outs)
        outputs[name] = outs
        rows[name] = {"seconds": median(times), "runs": [round(t, 3) for t in times], "tokens": tokens,
                      "tokens_per_s": tokens / median(times), "prompts_per_s": len(outs) / median(times)}

    if "naive" in wanted:
        k = min(args.naive_n or args.n, args.n)
        times, outs = timed(lambda: naive_generate(loaded, prompt_ids[:k], args.max_new_tokens), args.repeats)
        record("naive", times, outs)
    if "hf" in wanted:
        times, resp = timed(lambda: hf.generate(requests), args.repeats)
        record("hf", times, [(r.texts[0], r.n_tokens[0]) for r in resp])
    not_measured: dict[str, str] = {}
    if "vllm" in wanted:
        why = vllm_available()
        if why is None:
            from harness.backends.vllm import VLLMBackend

            vb = VLLMBackend(spec)
            times, resp = timed(lambda: vb.generate(requests), args.repeats)
            record("vllm", times, [(r.texts[0], r.n_tokens[0]) for r in resp])
        else:
            not_measured["vllm"] = why

    base = outputs.get("naive")
    for name, row in rows.items():
        if "naive" in rows:  # tokens/s, not seconds: --naive-n may time fewer prompts
            row["speedup_vs_naive"] = row["tokens_per_s"] / rows["naive"]["tokens_per_s"]
        if base is not None:  # on the prompts the naive loop ran
            row["same_text_as_naive"] = sum(a[0] == b[0] for a, b in zip(outputs[name], base))
            row["compared"] = len(base)
    result = {
        "benchmark": "generation", "model": args.model, "model_path": hf.path, "device": str(loaded.device),
        "dtype": str(loaded.model.dtype), "n_prompts": args.n, "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size, "repeats": args.repeats, "machine": machine(), "results": rows,
        "not_measured": not_measured,
        "goal": {"hf_speedup_vs_naive": 8.0,
                 "met": rows.get("hf", {}).get("speedup_vs_naive", 0) >= 8.0 if "naive" in rows else None},
    }
    table = [[name, f"{r['seconds']:.3f}", ", ".join(f"{t:.2f}" for t in r["runs"]), r["tokens"],
              f"{r['tokens_per_s']:,.0f}", f"{r.get('speedup_vs_naive', float('nan')):.1f}x",
              f"{r['same_text_as_naive']}/{r['compared']}" if base is not None else "—"]
             for name, r in rows.items()]
    print(markdown_table(["backend", "time (s)", "runs (s)", "tokens", "tokens/s", "vs naive", "same text"], table))
    for name, why in not_measured.items():
        print(f"{name}: not measured ({why})")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
