"""Probe attacks: ask the unlearned model for forgotten answers in other ways.

Unlearning is often fitted to the exact prompt it trained on. The paraphrase probe asks
each forget question in its other wordings (`QAItem.question_paraphrases`) and counts an
item recovered when any wording brings the answer back (max over wordings). The prefix
probe gives the model the first half of the answer and asks for the rest. Both run on the
unlearned model's backend, so the response cache serves reruns.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import replace
from typing import Any, ClassVar

from harness.api.attack import Attack, AttackContext, paired_gain
from harness.api.metric import MetricResult
from harness.stats import mean_ci


class _ForgetView:
    """A benchmark whose forget split is rewritten item by item (None drops an item)."""

    def __init__(self, benchmark: Any, rewrite, prefixes: dict[str, str] | None = None):
        self._benchmark = benchmark
        self._rewrite = rewrite
        self._prefixes = prefixes if prefixes is not None else {}
        forget = benchmark.forget_split()
        self._forget = [r for r in (rewrite(i) for i in benchmark.split(forget)) if r is not None]

    def split(self, name: str) -> list[Any]:
        return self._forget if name == self._benchmark.forget_split() else self._benchmark.split(name)

    def prompt(self, item: Any) -> str:
        base = self._benchmark.prompt(item)
        prefix = self._prefixes.get(item.id)
        return base + self._benchmark.target(prefix) if prefix else base

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._benchmark, attr)


class _ProbeAttack(Attack):
    on_original: ClassVar[bool] = True  # the original model's probe score is the baseline
    class Params(Attack.Params):
        metrics: list[str] = ["exact_match_recall@forget", "probability@forget"]

    @abstractmethod
    def views(self, benchmark: Any) -> list[_ForgetView]:
        """The rewritten benchmarks to ask; an item's probe value is its best over views."""

    def run(self, ctx: AttackContext) -> dict[str, MetricResult]:
        from harness.evaluate import evaluate, resolve_metrics

        views = [v for v in self.views(ctx.benchmark) if v.split(ctx.benchmark.forget_split())]
        if not views:
            return {f"{self.name}:{m}": MetricResult(f"{self.name}:{m}", None, None, None, 0, None,
                                                     details={"reason": "no forget item has a probe"})
                    for m in self.params.metrics}
        per_view = [evaluate(v, resolve_metrics(v, self.params.metrics, ctx.seed), ctx.backend).results for v in views]
        plain = evaluate(ctx.benchmark, resolve_metrics(ctx.benchmark, self.params.metrics, ctx.seed), ctx.backend).results
        out: dict[str, MetricResult] = {}
        for mid in self.params.metrics:
            best: dict[str, float] = {}
            for results in per_view:
                for item_id, v in results[mid].per_item.items():
                    best[item_id] = max(v, best.get(item_id, float("-inf")))
            rid = f"{self.name}:{mid}"
            if not best:
                out[rid] = MetricResult(rid, None, None, None, 0, None)
                continue
            value, lo, hi = mean_ci(list(best.values()), seed=ctx.seed)
            probe = MetricResult(rid, value, lo, hi, len(best), plain[mid].higher_is_better, per_item=best,
                                 details={"attack": {"name": self.name, "views": len(views)}})
            out[rid] = probe
            out[f"{self.name}_gain:{mid}"] = paired_gain(self.name, mid, probe, plain[mid], ctx.seed)
        return out


class ParaphraseProbe(_ProbeAttack):
    """Each forget question in its other wordings; recovered when any wording elicits the answer."""

    name: ClassVar[str] = "paraphrase_probe"

    def views(self, benchmark: Any) -> list[_ForgetView]:
        forget = benchmark.split(benchmark.forget_split())
        n = max((len(i.question_paraphrases) for i in forget), default=0)
        return [
            _ForgetView(benchmark, lambda i, k=k: replace(i, question=i.question_paraphrases[k])
                        if len(i.question_paraphrases) > k else None)
            for k in range(n)
        ]


class PrefixProbe(_ProbeAttack):
    """The first half of the answer is given; the model must produce the second half."""

    name: ClassVar[str] = "prefix_probe"

    def views(self, benchmark: Any) -> list[_ForgetView]:
        prefixes: dict[str, str] = {}

        def rewrite(item: Any) -> Any:
            words = item.answer.split()
            if len(words) < 2:
                return None
            cut = len(words) // 2
            prefixes[item.id] = " ".join(words[:cut])
            return replace(item, answer=" ".join(words[cut:]), paraphrased_answer="", perturbed_answers=())

        view = _ForgetView(benchmark, rewrite, prefixes)
        return [view]
