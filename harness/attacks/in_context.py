"""In-context re-introduction ("ununlearning", Shumailov et al. 2407.00106; docs/metrics.md §14 [proposal]).

For each forget item the fact is put back in the prompt, in other words than the trained
answer (`paraphrased_answer`), before the question: `"<context>\\n" + prompt`. The original
question is asked, and a derived one when the benchmark offers `derived_question(item)` (a
QAItem needing the fact plus a step; fictitious-facts asks the reverse question, "Who wrote
X?"). A control prepends irrelevant text of the same word count (facts about retain
entities). The model under test, the original model and the retain-only model are scored in
every condition (no context, context, control) with the forget metrics.

Results (`<id>:<metric id>`; `in_context_derived*` the same on derived questions):
- `in_context`: the unlearned model with the context; `in_context_gain`: minus no context (paired);
- `in_context_recovery`: (with context − unlearned) / (original − unlearned), as relearning's;
- `in_context_ratio`: the ununlearning ratio score(M̂, C + q) / score(M_orig, q);
- `in_context_control` (+ `_gain`): the same-length irrelevant context;
- `in_context_original`, `in_context_retain_model` (+ `_ratio`): the other models with the context
  (the retain-only model with the context is the "exact unlearning" reference).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from harness.api.attack import Attack, AttackContext, paired_gain, recovery_rate
from harness.attacks.restoration import LimitedView
from harness.api.metric import MetricResult


class ContextView:
    """A benchmark whose forget split is `items` and whose prompts start with a per-item context."""

    def __init__(self, benchmark: Any, items: list[Any], contexts: dict[str, str]):
        self._benchmark, self._items, self._contexts = benchmark, items, contexts

    def split(self, name: str) -> list[Any]:
        return self._items if name == self._benchmark.forget_split() else self._benchmark.split(name)

    def prompt(self, item: Any) -> str:
        context = self._contexts.get(item.id)
        base = self._benchmark.prompt(item)
        return f"{context}\n{base}" if context else base

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._benchmark, attr)


def control_contexts(contexts: dict[str, str], filler: list[str], seed: int) -> dict[str, str]:
    """Per item, irrelevant text with the same number of words as its context: words of
    `filler` sentences in a seeded order, cut to length."""
    rng = random.Random(seed)
    words = [w for s in filler for w in s.split()]
    if not words:
        return {}
    out = {}
    for item_id, text in contexts.items():
        n = len(text.split())
        start = rng.randrange(len(words))
        out[item_id] = " ".join(words[(start + k) % len(words)] for k in range(n))
    return out


def _ratio(rid: str, num: MetricResult, den: MetricResult) -> MetricResult:
    ids = [i for i in num.per_item if i in den.per_item]
    if not ids:
        return MetricResult(rid, None, None, None, 0, False)
    d = float(np.mean([den.per_item[i] for i in ids]))
    value = float(np.mean([num.per_item[i] for i in ids])) / d if abs(d) > 1e-12 else None
    return MetricResult(rid, value, None, None, len(ids), False,
                        details={"what": "mean with context / mean of the reference without context, same items"})


def _renamed(r: MetricResult, rid: str) -> MetricResult:
    return MetricResult(rid, r.value, r.ci_low, r.ci_high, r.n, r.higher_is_better, per_item=dict(r.per_item),
                        details=dict(r.details))


class InContextAttack(Attack):
    name: ClassVar[str] = "in_context"

    class Params(Attack.Params):
        metrics: list[str] = ["exact_match_recall@forget", "probability@forget"]
        derived: bool = True  # also ask the benchmark's derived questions, when it has them
        control: bool = True  # the same-length irrelevant context
        max_items: int | None = Field(None, ge=1)

    def run(self, ctx: AttackContext) -> dict[str, MetricResult]:
        from harness.evaluate import evaluate, resolve_metrics

        p = self.params
        bench = ctx.benchmark
        fsplit = bench.forget_split()
        forget = [i for i in LimitedView(bench, p.max_items).split(fsplit) if getattr(i, "paraphrased_answer", "")]
        if not forget:
            return {f"{self.name}:{m}": MetricResult(f"{self.name}:{m}", None, None, None, 0, None,
                                                     details={"reason": "no forget item has a paraphrased answer"})
                    for m in p.metrics}
        contexts = {i.id: i.paraphrased_answer for i in forget}
        try:
            filler = [i.paraphrased_answer or i.answer for i in bench.split(bench.resolve_split("retain"))]
        except Exception:  # noqa: BLE001 - no retain role: no control
            filler = []
        controls = control_contexts(contexts, filler, ctx.seed) if p.control else {}
        # suffix -> (items, item id -> the forget item whose fact its context states)
        question_sets: dict[str, tuple[list[Any], dict[str, str]]] = {"": (forget, {i.id: i.id for i in forget})}
        derive = getattr(bench, "derived_question", None)
        if p.derived and callable(derive):
            pairs = [(d, i.id) for d, i in ((derive(i), i) for i in forget) if d is not None]
            if pairs:
                question_sets["_derived"] = ([d for d, _ in pairs], {d.id: src for d, src in pairs})
        models = {"unlearned": ctx.backend,
                  "original": ctx.make_backend(ctx.original_spec, None) if ctx.original_spec is not None else None,
                  "retain_model": ctx.make_backend(ctx.reference_spec, None) if ctx.reference_spec is not None else None}
        out: dict[str, MetricResult] = {}
        for suffix, (items, source) in question_sets.items():
            conditions = {"none": {}, "context": {i: contexts[src] for i, src in source.items()}}
            if controls:
                conditions["control"] = {i: controls[src] for i, src in source.items()}
            scores: dict[tuple[str, str], dict[str, MetricResult]] = {}
            for model, backend in models.items():
                if backend is None:
                    continue
                for cond, ctxs in conditions.items():
                    view = ContextView(bench, items, ctxs)
                    scores[model, cond] = evaluate(view, resolve_metrics(view, p.metrics, ctx.seed), backend).results
            name = f"{self.name}{suffix}"
            for mid in p.metrics:
                unl_ctx, unl_none = scores["unlearned", "context"][mid], scores["unlearned", "none"][mid]
                out[f"{name}:{mid}"] = _renamed(unl_ctx, f"{name}:{mid}")
                out[f"{name}_gain:{mid}"] = paired_gain(name, mid, unl_ctx, unl_none, ctx.seed)
                orig_none = scores.get(("original", "none"), {}).get(mid)
                rec = recovery_rate(name, mid, unl_ctx, unl_none, orig_none, ctx.seed)
                out[rec.metric] = rec
                if orig_none is not None:
                    out[f"{name}_ratio:{mid}"] = _ratio(f"{name}_ratio:{mid}", unl_ctx, orig_none)
                    out[f"{name}_original:{mid}"] = _renamed(scores["original", "context"][mid], f"{name}_original:{mid}")
                if ("unlearned", "control") in scores:
                    ctl = scores["unlearned", "control"][mid]
                    out[f"{name}_control:{mid}"] = _renamed(ctl, f"{name}_control:{mid}")
                    out[f"{name}_control_gain:{mid}"] = paired_gain(f"{name}_control", mid, ctl, unl_none, ctx.seed)
                if ("retain_model", "context") in scores:
                    ret = scores["retain_model", "context"][mid]
                    out[f"{name}_retain_model:{mid}"] = _renamed(ret, f"{name}_retain_model:{mid}")
                    if orig_none is not None:
                        out[f"{name}_retain_model_ratio:{mid}"] = _ratio(f"{name}_retain_model_ratio:{mid}", ret, orig_none)
                for key in [k for k in out if k.startswith(name) and k.endswith(f":{mid}")]:
                    out[key].details.setdefault("attack", {"name": self.name, "questions": suffix or "original",
                                                           "n_items": len(items)})
                    out[key].details.setdefault("conditions", {
                        f"{m}/{c}": r[mid].value for (m, c), r in scores.items()})
        return out
