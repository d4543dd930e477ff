"""Relearning attack: fine-tune the unlearned model on a small part of the forget set.

If unlearning deleted the knowledge, a few steps on a fifth of the forget items teach
those items back and little else. If it only hid the knowledge, the rest of the forget set
comes back too. So the attack re-measures the whole forget set and, separately, the
items it never trained on (`relearn_unseen:`).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.artifacts import ModelArtifact
from harness.api.attack import Attack, AttackContext, paired_gain, recovery_rate
from harness.config import cell_hash
from harness.api.metric import MetricResult
from harness.stats import mean_ci
from harness.api.method import UnlearningMethod
from harness.api.training import answer_nll_mean


class Relearn(UnlearningMethod):
    """Plain fine-tuning (answer NLL) on the forget items it is given: the attacker's training."""

    name: ClassVar[str] = "relearn"
    uses_retain: ClassVar[bool] = False

    class Params(UnlearningMethod.Params):
        peft: Literal["lora", "full"] = "full"  # the unlearned model may carry an adapter: train a merged copy

    def loss(self, model: Any, forget: dict, retain: dict | None, ref_model: Any):
        return answer_nll_mean(model, forget)


class ForgetSubset:
    """A view of a benchmark whose forget split is a subset of its items (everything else delegated)."""

    def __init__(self, benchmark: Any, item_ids: set[str]):
        self._benchmark = benchmark
        self._ids = item_ids

    def split(self, name: str) -> list[Any]:
        items = self._benchmark.split(name)
        return [i for i in items if i.id in self._ids] if name == self._benchmark.forget_split() else items

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._benchmark, attr)


class RelearnAttack(Attack):
    """Fine-tune on `fraction` of the forget items for `steps` steps, then re-measure the forget set."""

    name: ClassVar[str] = "relearn"

    class Params(Attack.Params):
        fraction: float = Field(0.2, gt=0, le=1)
        steps: int = Field(10, ge=1)
        lr: float = Field(1e-3, gt=0)
        batch_size: int = Field(4, ge=1)
        metrics: list[str] = ["exact_match_recall@forget", "probability@forget"]

    def run(self, ctx: AttackContext) -> dict[str, MetricResult]:
        from harness.evaluate import evaluate, resolve_metrics

        p = self.params
        bench = ctx.benchmark
        forget = bench.split(bench.forget_split())
        rng = random.Random(ctx.seed)
        k = max(1, round(p.fraction * len(forget)))
        seen = {i.id for i in rng.sample(forget, k)}
        artifact = self._relearned(ctx, seen)
        spec = ctx.spec.model_copy(update={"path": artifact.checkpoint_path, "builder": None, "adapter": None})
        attacked_backend = ctx.make_backend(spec, None)

        metrics = resolve_metrics(bench, p.metrics, ctx.seed)
        attacked = evaluate(bench, metrics, attacked_backend).results
        before = evaluate(bench, metrics, ctx.backend).results  # cached: the cell already asked
        out: dict[str, MetricResult] = {}
        for mid in p.metrics:
            a, u = attacked[mid], before[mid]
            out[f"relearn:{mid}"] = _renamed(a, f"relearn:{mid}")
            unseen = {i: v for i, v in a.per_item.items() if i not in seen}
            if unseen:
                value, lo, hi = mean_ci(list(unseen.values()), seed=ctx.seed)
                out[f"relearn_unseen:{mid}"] = MetricResult(
                    f"relearn_unseen:{mid}", value, lo, hi, len(unseen), a.higher_is_better, per_item=unseen,
                    details={"what": "after relearning, on forget items the attack did not train on"})
            out[f"relearn_gain:{mid}"] = paired_gain("relearn", mid, a, u, ctx.seed)
            original = (ctx.original or {}).get(mid)
            out[f"relearn_recovery:{mid}"] = recovery_rate("relearn", mid, a, u, original, ctx.seed)
        for r in out.values():
            r.details.setdefault("attack", {"name": self.name, **p.model_dump(), "n_trained": len(seen)})
        return out

    def _relearned(self, ctx: AttackContext, seen: set[str]) -> ModelArtifact:
        """Train (or reuse, when the recipe is unchanged) the relearned checkpoint."""
        p = self.params
        out_dir = ctx.output_dir / "relearn"
        recipe = cell_hash(ctx.artifact.hash if ctx.artifact else ctx.spec.recipe_fields(), p.model_dump(),
                           sorted(seen), ctx.seed)
        existing = ModelArtifact.load(out_dir)
        if existing and existing.config_hash == recipe and existing.checkpoint_path:
            return existing
        method = Relearn(lr=p.lr, max_steps=p.steps, batch_size=p.batch_size)
        artifact = method.apply(ctx.load_model(), ForgetSubset(ctx.benchmark, seen), ctx.run.in_dir(out_dir))
        artifact.config_hash = recipe
        artifact.save(out_dir)
        return artifact


def _renamed(result: MetricResult, new_id: str) -> MetricResult:
    return MetricResult(new_id, result.value, result.ci_low, result.ci_high, result.n, result.higher_is_better,
                        per_item=result.per_item, details=dict(result.details))
