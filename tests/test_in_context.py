"""In-context re-introduction: the rewritten prompts, the control, and the reported arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.api.benchmark import BenchmarkData, QAItem, TofuShapedBenchmark
from harness.benchmarks.fictitious_facts import FictitiousFacts
from harness.api.context import RunContext
from harness.backends.factory import BackendFactory
from harness.api.attack import AttackContext
from harness.attacks.in_context import ContextView, InContextAttack, control_contexts
from harness.evaluate import evaluate, resolve_metrics
from harness.zoo.specs import ModelSpec


class _Bench(TofuShapedBenchmark):
    name = "ic-toy"

    def load(self) -> BenchmarkData:
        forget = [QAItem("f1", "What does Ada like?", "Ada likes tea.", paraphrased_answer="Tea is what Ada likes.", entity="Ada"),
                  QAItem("f2", "What does Bo like?", "Bo likes maps.", paraphrased_answer="Maps are liked by Bo.", entity="Bo"),
                  QAItem("f3", "What does Cyr like?", "Cyr likes rivers.", entity="Cyr")]  # no context: skipped
        retain = [QAItem("r1", "What does Eli like?", "Eli likes old clocks.", paraphrased_answer="Old clocks please Eli.")]
        return BenchmarkData({"forget10": forget, "retain90": retain, "retain_perturbed": retain}, source="t")

    def derived_question(self, item):
        return QAItem(f"{item.id}-rev", f"Who likes {item.answer.split()[-1].rstrip('.')}?", item.entity)


def test_context_view_and_same_length_control():
    bench = _Bench()
    view = ContextView(bench, bench.split("forget10")[:1], {"f1": "Tea is what Ada likes."})
    assert view.prompt(view.split("forget10")[0]) == "Tea is what Ada likes.\nQuestion: What does Ada like?\nAnswer:"
    assert [i.id for i in view.split("forget10")] == ["f1"]
    ctl = control_contexts({"a": "one two three four five six seven"}, ["Old clocks please Eli."], seed=0)
    assert len(ctl["a"].split()) == 7 and set(ctl["a"].split()) <= {"Old", "clocks", "please", "Eli."}


def test_fictitious_facts_derived_question_is_the_reverse():
    bench = FictitiousFacts(forget_split="forget10", limit=5)
    item = bench.split("forget10")[3]  # the book fact
    d = bench.derived_question(item)
    assert d.answer == item.entity and d.question.startswith("Who wrote ") and d.question[len("Who wrote "):-1] in item.answer


def test_in_context_attack_reports_gain_ratio_and_references(toy_zoo):
    specs = {k: ModelSpec(name=k, **v) for k, v in toy_zoo.items()}
    bench = _Bench()
    factory = BackendFactory(device="cpu")
    unl = factory.make(specs["toy-retain"])  # any model other than the "original" stands in
    ctx = AttackContext(benchmark=bench, spec=specs["toy-retain"], artifact=None, backend=unl,
                        load_model=lambda: None, results={}, original=None,
                        run=RunContext(output_dir=Path("."), seed=0, backends=factory),
                        original_spec=specs["toy"], reference_spec=specs["toy-retain"])
    out = InContextAttack(metrics=["probability@forget"]).run(ctx)
    mid = "probability@forget"
    forget = bench.split("forget10")[:2]
    with_ctx = ContextView(bench, forget, {i.id: i.paraphrased_answer for i in forget})
    plain = ContextView(bench, forget, {})
    unl_ctx = evaluate(with_ctx, resolve_metrics(with_ctx, [mid], 0), unl).results[mid]
    unl_none = evaluate(plain, resolve_metrics(plain, [mid], 0), unl).results[mid]
    orig_none = evaluate(plain, resolve_metrics(plain, [mid], 0), factory.make(specs["toy"])).results[mid]
    assert out[f"in_context:{mid}"].value == pytest.approx(unl_ctx.value)
    assert out[f"in_context:{mid}"].n == 2  # f3 has no paraphrased context
    assert out[f"in_context_gain:{mid}"].value == pytest.approx(unl_ctx.value - unl_none.value)
    assert out[f"in_context_ratio:{mid}"].value == pytest.approx(unl_ctx.value / orig_none.value)
    rec = (unl_ctx.value - unl_none.value) / (orig_none.value - unl_none.value)
    assert out[f"in_context_recovery:{mid}"].value == pytest.approx(rec)
    # the retain-only model is the unlearned stand-in here: its context score is the same
    assert out[f"in_context_retain_model:{mid}"].value == pytest.approx(unl_ctx.value)
    for key in (f"in_context_control:{mid}", f"in_context_derived:{mid}", f"in_context_derived_gain:{mid}",
                f"in_context_original:{mid}"):
        assert key in out and out[key].n == 2
    assert np.isfinite(out[f"in_context_control_gain:{mid}"].value)
