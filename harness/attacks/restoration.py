"""Restoration attack: patch the original model's forget-selective SAE features back in
(docs/metrics.md §4, "suppression or deletion"; LM adaptation §4.6 [proposal]).

A TopK SAE is trained on the original model's residual stream at decoder layer ℓ (per-token
hidden states of forget, retain and holdout texts, asked through the cached backend). Its
"expert" latents are the ones selective for forget versus retain tokens (`sae.select_experts`).
The unlearned model is then steered at ℓ (`representations/steering.py`), `direct_injection`
and `add`, at each scale α, and the forget and retain scores are re-measured. If unlearning
only suppressed the knowledge, putting the expert codes back restores it.

Results (`<id>:<metric id>`):
- `restored[<mode>,a=<α>]:<metric>`: the forget (and retain) score under that steering;
- `restoration_rate[<mode>,a=<α>]:<forget metric>`: RR(α) = (restored − unlearned) /
  (original − unlearned) on the same items, clipped to [0, 1], with a paired bootstrap CI;
- `restoration_rate[<mode>]:<m>` and `restoration_rate:<m>`: the maximum over α (and modes);
- `restoration_retain:<retain metric>`: the retain score under the steering that gave that maximum.
Steered answers are cached under the unlearned model's identity plus a hash of the steering
(SAE, experts, mode, α, original model), so a rerun makes no model calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from harness.api.attack import Attack, AttackContext, recovery_rate
from harness.errors import ConfigError
from harness.api.metric import MetricResult
from harness.representations.features import num_layers, token_states
from harness.representations.sae import SAEConfig, TopKSAE, load_or_train_sae, select_experts


class LimitedView:
    """A benchmark whose every split is cut to its first `n` items (None: unchanged)."""

    def __init__(self, benchmark: Any, n: int | None):
        self._benchmark, self._n = benchmark, n

    def split(self, name: str) -> list[Any]:
        items = self._benchmark.split(name)
        return items if self._n is None else items[: self._n]

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._benchmark, attr)


@dataclass
class Prepared:
    """What steering needs, built once per attack run."""

    view: Any
    layer: int
    sae: TopKSAE
    sae_info: dict
    experts: list[int]
    original_backend: Any


def _retain_id(metric_id: str) -> str:
    name, _, split = metric_id.partition("@")
    return f"{name}@retain" if split == "forget" else metric_id


def _renamed(r: MetricResult, new_id: str, **details: Any) -> MetricResult:
    return MetricResult(new_id, r.value, r.ci_low, r.ci_high, r.n, r.higher_is_better, per_item=dict(r.per_item),
                        details={**r.details, **details})


class RestorationAttack(Attack):
    """Steer the unlearned model with the original model's SAE expert codes; measure what returns."""

    name: ClassVar[str] = "restoration"

    class Params(Attack.Params):
        layer: int | None = Field(None, ge=0)  # decoder layer; None: len(layers) // 2 (at most the second-last)
        width: int = Field(256, ge=1)
        k: int = Field(16, ge=1)
        sae_steps: int = Field(600, ge=1)
        sae_lr: float = Field(1e-3, gt=0)
        selection: Literal["top_n", "threshold"] = "top_n"
        n_experts: int = Field(32, ge=1)
        threshold: float = Field(0.5, ge=0, le=1)
        modes: list[Literal["direct_injection", "add"]] = ["direct_injection", "add"]
        scales: list[float] = [1.0, 5.0, 10.0]
        patch: Literal["linear", "residual"] = "linear"
        add_bias: bool = True
        max_items: int | None = Field(None, ge=2)  # first N items of each split (speed)
        metrics: list[str] = ["exact_match_recall@forget", "probability@forget"]

    def prepare(self, ctx: AttackContext) -> Prepared:
        """Train (or load) the SAE on the original model and select the forget experts."""
        p = self.params
        if ctx.original_spec is None:
            raise ConfigError("attack 'restoration' needs the original model's spec (run it through the runner)")
        if not p.modes or not p.scales:
            raise ConfigError("attack 'restoration': modes and scales must not be empty")
        view = LimitedView(ctx.benchmark, p.max_items)
        original = ctx.make_backend(ctx.original_spec, None)
        n = num_layers(original)
        layer = min(n // 2, n - 2) if p.layer is None else p.layer
        if not 0 <= layer <= n - 2:
            raise ConfigError(f"attack 'restoration': layer {layer} must be in 0..{n - 2} (the model has {n} decoder "
                              "layers; the last one's hidden state is taken after the final norm)")
        bench = ctx.benchmark
        forget = view.split(bench.forget_split())
        retain = view.split(bench.resolve_split("retain"))
        try:
            holdout = view.split(bench.resolve_split("holdout"))
        except Exception:  # noqa: BLE001 - a benchmark without a holdout split trains on forget + retain
            holdout = []
        states = token_states(original, bench, forget + retain + holdout, layer + 1, span="all")
        acts = torch.from_numpy(np.concatenate(states))
        config = SAEConfig(width=p.width, k=p.k, lr=p.sae_lr, steps=p.sae_steps, seed=ctx.seed)
        sae, info = load_or_train_sae(acts, config)
        with torch.no_grad():
            codes_f = sae.encode(torch.from_numpy(np.concatenate(states[: len(forget)])))
            codes_r = sae.encode(torch.from_numpy(np.concatenate(states[len(forget): len(forget) + len(retain)])))
        experts = select_experts(codes_f, codes_r, p.selection, p.n_experts, p.threshold)
        return Prepared(view, layer, sae, info, experts, original)

    def run(self, ctx: AttackContext) -> dict[str, MetricResult]:
        from harness.evaluate import evaluate, resolve_metrics

        p = self.params
        prep = self.prepare(ctx)
        forget_ids = list(p.metrics)
        retain_ids = [_retain_id(m) for m in forget_ids if _retain_id(m) != m]
        metrics = resolve_metrics(prep.view, forget_ids + retain_ids, ctx.seed)
        unlearned = evaluate(prep.view, metrics, ctx.backend).results
        original = evaluate(prep.view, metrics, prep.original_backend).results
        common = {"layer": prep.layer, "n_experts": len(prep.experts), "sae": {k: prep.sae_info.get(k) for k in
                  ("hash", "fvu", "mse", "n_train", "cached")}, "patch": p.patch, "max_items": p.max_items}
        out: dict[str, MetricResult] = {}
        loader = _Loader(ctx)
        best: dict[str, tuple[float, str, str]] = {}  # forget metric -> (RR, mode, alpha label)
        per_mode_best: dict[tuple[str, str], MetricResult] = {}
        for mode in p.modes:
            for alpha in p.scales:
                tag = f"{mode},a={alpha:g}"
                backend = self._steered(ctx, prep, loader, mode, alpha)
                steered = evaluate(prep.view, metrics, backend).results
                for mid in forget_ids + retain_ids:
                    out[f"restored[{tag}]:{mid}"] = _renamed(steered[mid], f"restored[{tag}]:{mid}",
                                                             attack={"name": self.name, "mode": mode, "alpha": alpha})
                for mid in forget_ids:
                    rr = _clipped(recovery_rate(f"restoration_rate[{tag}]", mid, steered[mid], unlearned[mid],
                                                original[mid], ctx.seed), f"restoration_rate[{tag}]:{mid}")
                    rr.details.update({**common, "mode": mode, "alpha": alpha,
                                       "restored": steered[mid].value, "unlearned": unlearned[mid].value,
                                       "original": original[mid].value})
                    out[rr.metric] = rr
                    if rr.value is None:
                        continue
                    key = (mode, mid)
                    if key not in per_mode_best or rr.value > per_mode_best[key].value:
                        per_mode_best[key] = rr
                    if mid not in best or rr.value > best[mid][0]:
                        best[mid] = (rr.value, mode, f"{alpha:g}")
        for (mode, mid), rr in per_mode_best.items():
            out[f"restoration_rate[{mode}]:{mid}"] = _renamed(rr, f"restoration_rate[{mode}]:{mid}", max_over="alpha")
        for mid in forget_ids:
            rid = f"restoration_rate:{mid}"
            if mid not in best:
                out[rid] = MetricResult(rid, None, None, None, 0, False, details={**common, "reason": "unlearning removed nothing"})
                continue
            _, mode, alpha = best[mid]
            out[rid] = _renamed(out[f"restoration_rate[{mode},a={alpha}]:{mid}"], rid, max_over="mode and alpha")
            rmid = _retain_id(mid)
            if rmid != mid:
                out[f"restoration_retain:{rmid}"] = _renamed(out[f"restored[{mode},a={alpha}]:{rmid}"],
                                                            f"restoration_retain:{rmid}", at={"mode": mode, "alpha": alpha})
        loader.close()
        return out

    def _steered(self, ctx: AttackContext, prep: Prepared, loader: "_Loader", mode: str, alpha: float) -> Any:
        """The unlearned model under the steering hook: an intervention named by its recipe,
        so its answers are cached apart from the plain model's and reused on a rerun."""
        from harness.api.intervention import Intervention
        from harness.representations.steering import steering

        p = self.params
        recipe = {"sae": prep.sae_info.get("hash"), "experts": prep.experts, "mode": mode, "alpha": alpha,
                  "patch": p.patch, "add_bias": p.add_bias, "layer": prep.layer,
                  "original": prep.original_backend.identity if mode == "direct_injection" else None}

        def enter(backend: Any) -> Any:
            original = loader.original(backend.loaded.device).model if mode == "direct_injection" else None
            return steering(backend.model, prep.layer, prep.sae, prep.experts, mode, alpha, original=original,
                            patch=p.patch, add_bias=p.add_bias)

        return ctx.run.backends.intervene(ctx.backend, Intervention.from_recipe("steer", recipe, enter, name=f"{mode}@{alpha:g}"))


class _Loader:
    """Loads the original model once per attack run, only when a steering hook needs it
    (direct injection reads its activations inside the unlearned model's forward pass)."""

    def __init__(self, ctx: AttackContext):
        self._ctx, self._orig = ctx, None

    def original(self, device: str) -> Any:
        if self._orig is None:
            from harness.zoo.load import load_hf_model

            self._orig = load_hf_model(self._ctx.original_spec, device=str(device))
            self._orig.model.eval()
        return self._orig

    def close(self) -> None:
        self._orig = None


def _clipped(r: MetricResult, new_id: str) -> MetricResult:
    """RR clipped to [0, 1] (docs/metrics.md §4.5 [proposal]), CI too."""
    def clip(v: float | None) -> float | None:
        return None if v is None else float(min(1.0, max(0.0, v)))

    details = {**r.details, "unclipped": r.value, "what": "(restored - unlearned) / (original - unlearned), clipped to [0, 1]"}
    return MetricResult(new_id, clip(r.value), clip(r.ci_low), clip(r.ci_high), r.n, False,
                        per_item={}, details=details)
