"""Representation similarity and probes: is the forget set still encoded? (docs/metrics.md §9.4 [proposal])

Features are mean-pooled hidden states (answer tokens by default) at several layers, asked
through the cached backend (`HiddenStatesRequest`), of the model under test, the original
model and the retain-only reference on the forget, retain and holdout items.

Results (`representation:<id>`, and `representation[layer=<l>]:<id>` per layer):
- `cka_original@<split>`, `cka_retain_model@<split>`: linear CKA (full-set for n ≤ 10k) to the
  original and to the retain-only model, the headline being the mean over layers with an
  item-bootstrap CI. After deletion a model should look like the retain-only one on forget
  inputs; after mere hiding it stays close to the original.
- `knn_entity@forget`: accuracy of a 5-NN cosine probe of the item's `entity`, fit on a
  stratified half of the forget items, tested on the other; `linear_probe_entity@forget`: a
  logistic-regression probe, stratified k-fold CV (both at `probe_layer`).
Runs on models without a method too (their CKA to the original is 1: the baseline).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from harness.api.attack import Attack, AttackContext
from harness.attacks.restoration import LimitedView
from harness.errors import ConfigError
from harness.api.metric import MetricResult
from harness.representations.cka import cka
from harness.representations.features import Span, default_layers, num_layers, pooled_states
from harness.representations.probes import knn_probe, logreg_probe
from harness.stats import bootstrap_ci

CKA_RESAMPLES = 200  # CKA is a set statistic: a cheap bootstrap over items is enough for its CI


class RepresentationAttack(Attack):
    name: ClassVar[str] = "representation"
    on_original: ClassVar[bool] = True

    class Params(Attack.Params):
        layers: list[int] | None = None  # HF hidden-state indices; None: the quarters of the depth
        probe_layer: int | None = None  # None: the middle of `layers`
        span: Span = "answer"
        splits: list[str] = ["forget", "retain", "holdout"]
        knn_k: int = Field(5, ge=1)
        probe_folds: int = Field(5, ge=2)
        max_items: int | None = Field(None, ge=4)

    def run(self, ctx: AttackContext) -> dict[str, MetricResult]:
        p = self.params
        view = LimitedView(ctx.benchmark, p.max_items)
        n = num_layers(ctx.backend)
        layers = sorted(set(p.layers)) if p.layers else default_layers(n)
        if not layers or any(not 0 <= layer <= n for layer in layers):
            raise ConfigError(f"attack 'representation': layers {layers} must lie in 0..{n} (hidden-state indices)")
        probe_layer = layers[len(layers) // 2] if p.probe_layer is None else p.probe_layer
        if probe_layer not in layers:
            layers = sorted({*layers, probe_layer})
            if not 0 <= probe_layer <= n:
                raise ConfigError(f"attack 'representation': probe_layer {probe_layer} must lie in 0..{n}")
        others = {"original": ctx.original_spec, "retain_model": ctx.reference_spec}
        backends = {k: ctx.make_backend(s, None) if s is not None else None for k, s in others.items()}
        common = {"attack": {"name": self.name, "layers": layers, "span": p.span}}
        out: dict[str, MetricResult] = {}
        for role in p.splits:
            try:
                items = view.split(view.resolve_split(role))
            except Exception:  # noqa: BLE001 - a benchmark without this role
                continue
            if len(items) < 2:
                continue
            ours = pooled_states(ctx.backend, view, items, layers, p.span)
            for other, backend in backends.items():
                mid = f"cka_{other}@{role}"
                # Like the retain-only model: better. Like the original: better where knowledge is
                # kept, worse on the forget set (there it means hidden, not deleted; docs/metrics.md).
                better = True if other == "retain_model" else role != "forget"
                if backend is None:
                    out[f"{self.name}:{mid}"] = MetricResult(f"{self.name}:{mid}", None, None, None, 0, better,
                                                             details={**common, "reason": f"no {other} model"})
                    continue
                theirs = pooled_states(backend, view, items, layers, p.span)
                for layer in layers:
                    rid = f"{self.name}[layer={layer}]:{mid}"
                    out[rid] = MetricResult(rid, cka(ours[layer], theirs[layer], ctx.seed), None, None, len(items),
                                            better, details=common)

                def mean_cka(idx: np.ndarray) -> float:
                    idx = idx.astype(int)
                    return float(np.nanmean([cka(ours[l][idx], theirs[l][idx], ctx.seed) for l in layers]))

                value = mean_cka(np.arange(len(items)))
                lo, hi = bootstrap_ci([np.arange(len(items))], mean_cka, seed=ctx.seed, n_resamples=CKA_RESAMPLES)
                out[f"{self.name}:{mid}"] = MetricResult(f"{self.name}:{mid}", value, min(lo, value), max(hi, value),
                                                         len(items), better, details={**common, "mean_over": "layers"})
            if role == "forget":
                labels = [getattr(i, "entity", "") or "" for i in items]
                if not any(labels):
                    continue
                x = ours[probe_layer]
                for pid, (acc, n_used) in {
                    "knn_entity@forget": knn_probe(x, labels, p.knn_k, ctx.seed),
                    "linear_probe_entity@forget": logreg_probe(x, labels, p.probe_folds, ctx.seed),
                }.items():
                    rid = f"{self.name}:{pid}"
                    out[rid] = MetricResult(rid, acc, None, None, n_used, False,
                                            details={**common, "probe_layer": probe_layer,
                                                     "n_classes": len(set(labels))})
        return out
