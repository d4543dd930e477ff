"""Hidden-state metrics: one forward pass serving several metrics vs one pass per metric.

Representation metrics (docs/metrics.md §9.4) read mean-pooled hidden states of forget and retain
texts. The harness gathers every metric's requests and de-duplicates them before calling the
model (harness/evaluate.py), so metrics that ask the *same* HiddenStatesRequest (all layers,
mean pooling) cost one forward pass per text together. This script times, on the same texts
and a bare HFBackend (no response cache):

  shared     - evaluate(all metrics): one request per text, one forward pass, every metric reads it;
  per-metric - evaluate(metric) once per metric: one pass per text per metric;
  own-layers - evaluate(all metrics), but each metric asks only its own layer: the requests
               differ, de-duplication cannot merge them, so again one pass per metric.

It checks that every metric's value agrees across the three (to 1e-6 relative: other batch
compositions move float sums in the last bits). The metrics are workloads for this benchmark
(defined here, not registered), built on harness/representations: a k-NN probe (k=5, cosine)
at the last layer and a logistic-regression probe (5-fold CV) at a middle layer telling forget
from retain texts, linear CKA between the middle and the last layer, and the mean feature
norm at layer 1.

    .venv/bin/python bench/bench_hidden_states.py [--model tiny-facts] [--n 200] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, median, timed, write_json  # noqa: E402


def make_metrics(benchmark, n: int, all_layers: tuple[int, ...], own_layers: bool) -> list[Any]:
    """Four representation metrics on the first n/2 forget and n/2 retain items."""
    import numpy as np

    from harness.api.metric import Metric
    from harness.representations.cka import linear_cka
    from harness.representations.probes import knn_probe, logreg_probe
    from harness.api.requests import HiddenStatesRequest

    forget = benchmark.split(benchmark.forget_split())[: n // 2]
    retain = benchmark.split(benchmark.retain_split())[: n - len(forget)]
    labelled = [(item, "forget") for item in forget] + [(item, "retain") for item in retain]
    last, middle = all_layers[-1], all_layers[len(all_layers) // 2]

    class Representation(Metric):
        needs_split = False
        layers: tuple[int, ...] = ()

        def asked(self, item) -> HiddenStatesRequest:
            return HiddenStatesRequest(context=benchmark.prompt(item), continuation=benchmark.target(item.answer),
                                       layers=self.layers if own_layers else all_layers, pooling="mean")

        def requests(self):
            return [self.asked(item) for item, _ in labelled]

        def features(self, responses, layer: int):
            return np.array([responses[self.asked(item)].states[layer] for item, _ in labelled], dtype=np.float64)

        def compute(self, responses, deps, reference):
            return self.result(self.value(responses), None, len(labelled))

    labels = [label for _, label in labelled]

    class KnnProbe(Representation):
        name, layers = "knn_probe", (last,)

        def value(self, responses):
            return knn_probe(self.features(responses, last), labels, k=5, seed=0)[0]

    class LinearProbe(Representation):
        name, layers = "linear_probe", (middle,)

        def value(self, responses):
            return logreg_probe(self.features(responses, middle), labels, folds=5, seed=0)[0]

    class LayerCKA(Representation):
        name, layers = "layer_cka", (middle, last)

        def value(self, responses):
            return linear_cka(self.features(responses, middle), self.features(responses, last))

    class FeatureNorm(Representation):
        name, layers = "feature_norm", (all_layers[1],)

        def value(self, responses):
            return float(np.linalg.norm(self.features(responses, all_layers[1]), axis=1).mean())

    return [cls(benchmark) for cls in (KnnProbe, LinearProbe, LayerCKA, FeatureNorm)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-facts")
    ap.add_argument("--n", type=int, default=200, help="texts: half forget, half retain")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from bench_generation import model_spec
    from harness.benchmarks.fictitious_facts import FictitiousFacts
    from harness.backends.hf import HFBackend
    from harness.evaluate import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    benchmark = FictitiousFacts(forget_split="forget10")
    hf = HFBackend(model_spec(args.model, "auto"), device=args.device, batch_size=args.batch_size)
    n_layers = hf.loaded.model.config.num_hidden_layers  # weights loaded outside the timings
    all_layers = tuple(range(n_layers + 1))  # 0 = embeddings ... L = last block

    class ModelTime:
        """The backend as evaluate() sees it, timing only the model work (metric fits excluded)."""

        seconds = 0.0

        def run(self, requests):
            t0 = time.perf_counter()
            try:
                return hf.run(requests)
            finally:
                self.seconds += time.perf_counter() - t0

    def run(mode: str) -> tuple[dict[str, float], int, float]:
        metrics = make_metrics(benchmark, args.n, all_layers, own_layers=mode == "own-layers")
        before, backend = hf.calls, ModelTime()
        if mode == "per-metric":
            values = {m.id: evaluate(benchmark, [m], backend).results[m.id].value for m in metrics}
        else:
            values = {k: r.value for k, r in evaluate(benchmark, metrics, backend).results.items()}
        return values, hf.calls - before, backend.seconds

    rows, values = {}, {}
    for mode in ("shared", "per-metric", "own-layers"):
        model_s: list[float] = []

        def once() -> tuple[dict[str, float], int]:
            vals, n_rows, seconds = run(mode)
            model_s.append(seconds)
            return vals, n_rows

        times, (vals, rows_forwarded) = timed(once, args.repeats)
        model_s = model_s[-args.repeats:]  # drop the warm-up
        values[mode] = vals
        rows[mode] = {"seconds": median(times), "runs": [round(t, 3) for t in times],
                      "model_seconds": median(model_s), "model_runs": [round(t, 3) for t in model_s],
                      "forward_rows": rows_forwarded, "values": vals}
    for r in rows.values():
        r["model_time_vs_shared"] = r["model_seconds"] / rows["shared"]["model_seconds"]
        r["total_time_vs_shared"] = r["seconds"] / rows["shared"]["seconds"]
    # Other batch compositions (own-layers packs 4x the rows) move float sums in the last bits.
    max_diff = max(abs(values[m][k] - v) / max(1.0, abs(v)) for m in values for k, v in values["shared"].items())
    identical = max_diff <= 1e-6
    n_texts = 2 * (args.n // 2) if args.n % 2 == 0 else args.n
    result = {"benchmark": "hidden_states", "model": args.model, "n_texts": n_texts, "layers": list(all_layers),
              "metrics": sorted(values["shared"]), "batch_size": args.batch_size, "repeats": args.repeats,
              "machine": machine(), "results": rows, "same_values": identical, "max_rel_diff": max_diff}
    table = [[mode, r["forward_rows"], f"{r['model_seconds']:.3f}", ", ".join(f"{t:.2f}" for t in r["model_runs"]),
              f"{r['model_time_vs_shared']:.2f}x", f"{r['seconds']:.3f}", f"{r['total_time_vs_shared']:.2f}x"]
             for mode, r in rows.items()]
    print(markdown_table(["mode", "forward rows", "model time (s)", "model runs (s)", "model time vs shared",
                          "total incl. metrics (s)", "total vs shared"], table))
    print(f"metric values {'agree' if identical else 'DIFFER'} across modes (max relative difference "
          f"{max_diff:.1e}): " + ", ".join(f"{k}={v:.4f}" for k, v in values["shared"].items()))
    write_json(args.json, result)
    if not identical:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
