"""Membership-inference attacks, PrivLeak and the grad_norm request, checked independently.

Expected per-item scores are worked by hand (or with numpy / zlib in the test), AUCs come
from `sklearn.metrics.roc_auc_score` called here with forget = 0, holdout = 1, and the
backend's gradient norm is compared with a direct backward pass on the tiny model.
"""

from __future__ import annotations

from dataclasses import replace

import math
import zlib

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from harness.api.benchmark import Benchmark, BenchmarkData, QAItem
from harness.catalog import build_metric
from harness.errors import ConfigError
from harness.evaluate import evaluate, resolve_metrics
from harness.api.metric import MetricResult
from harness.metrics.mia import (
    MIAGradNorm,
    MIALoss,
    MIAMinK,
    MIAMinKPlusPlus,
    MIAReference,
    MIAZlib,
    mia_auc_ranks,
)
from harness.metrics.privleak import PrivLeak
from harness.api.requests import (
    GradNormRequest,
    GradNormResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
    response_from_json,
    response_to_json,
)
from harness.stats import bootstrap_ci
from harness.testing import FakeBackend

FORGET = [QAItem("f1", "Who is F1?", "Alice Liddell"), QAItem("f2", "Where is F2?", "Paris")]
HOLDOUT = [QAItem("h1", "Who is H1?", "Bob"), QAItem("h2", "Where is H2?", "Rome at dawn, in May")]


class MIABench(Benchmark):
    name = "mia-fake"

    def load(self) -> BenchmarkData:
        return BenchmarkData(splits={"forget10": FORGET, "retain90": [], "holdout10": HOLDOUT}, source="test")


def ll(logprobs, mu=None, sigma=None) -> LoglikelihoodResponse:
    n = len(logprobs)
    return LoglikelihoodResponse(list(logprobs), [True] * n, list(mu or [-2.0] * n), list(sigma or [1.0] * n))


def llreq(question: str, answer: str) -> LoglikelihoodRequest:
    # The base Benchmark prompt/target format, written out here.
    return LoglikelihoodRequest(context=f"Question: {question}\nAnswer:", continuation=" " + answer)


# Token log-probs (and vocabulary mean / std per position for Min-k%++), by item.
LP = {
    "f1": [-1.0, -3.0, -2.0, -0.5],
    "f2": [-0.2, -0.4],
    "h1": [-2.0, -2.0, -4.0],
    "h2": [-1.5, -0.5, -3.0, -2.0, -1.0],
}
MU = {"f1": [-2.0, -2.0, -2.0, -2.0], "f2": [-1.0, -1.0], "h1": [-3.0, -1.0, -3.0], "h2": [-2.0] * 5}
SIGMA = {"f1": [1.0, 2.0, 0.5, 1.0], "f2": [0.5, 0.25], "h1": [1.0, 1.0, 2.0], "h2": [0.5, 1.0, 1.0, 2.0, 1.0]}
ITEMS = {i.id: i for i in FORGET + HOLDOUT}
RESPONSES = {llreq(ITEMS[k].question, ITEMS[k].answer): ll(LP[k], MU[k], SIGMA[k]) for k in LP}
RESPONSES.update({replace(r, moments=True): v for r, v in RESPONSES.items()})  # Min-k%++ asks with moments


def sk_auc(forget: list[float], holdout: list[float]) -> float:
    return roc_auc_score([0] * len(forget) + [1] * len(holdout), list(forget) + list(holdout))


def pairwise_auc(f, h) -> float:
    """An independent AUC: P(holdout score > forget score) + 1/2 P(tie), over all pairs."""
    f, h = np.asarray(f)[:, None], np.asarray(h)[None, :]
    return float(np.mean((h > f) + 0.5 * (h == f)))


@pytest.fixture
def bench() -> MIABench:
    return MIABench()


def check_result(res: MetricResult, expected: dict[str, float]) -> None:
    assert res.per_item == pytest.approx(expected)
    f = [expected["f1"], expected["f2"]]
    h = [expected["h1"], expected["h2"]]
    assert res.value == pytest.approx(sk_auc(f, h))
    assert res.n == 4
    assert res.details["n_forget"] == 2 and res.details["n_holdout"] == 2
    assert res.higher_is_better is None
    assert res.ci_low <= res.value <= res.ci_high


# --- requests ----------------------------------------------------------------------------
def test_requests_cover_forget_and_holdout(bench):
    expected = [llreq(i.question, i.answer) for i in FORGET + HOLDOUT]
    for cls in (MIALoss, MIAZlib, MIAMinK, MIAReference):
        assert cls(bench).requests() == expected
    assert MIAMinKPlusPlus(bench).requests() == [replace(r, moments=True) for r in expected]
    grad = MIAGradNorm(bench).requests()
    assert grad == [GradNormRequest(context=r.context, continuation=r.continuation, p=2.0) for r in expected]
    assert all(r.kind == "grad_norm" for r in grad)


def test_mia_metrics_take_no_split(bench):
    with pytest.raises(ConfigError):
        build_metric("mia_loss@forget", bench)
    with pytest.raises(ConfigError):
        MIAMinK(bench, k=0.0)
    with pytest.raises(ConfigError):
        MIAGradNorm(bench, p=3)


# --- AUC ---------------------------------------------------------------------------------
def test_loss_attack_hand_worked_auc(bench):
    # avgNLL: f1 6.5/4, f2 0.3, h1 8/3, h2 8/5. Pairs (f, h) with h > f: (f1,h1) (f2,h1) (f2,h2);
    # (f1 = 1.625, h2 = 1.6) is not -> AUC = 3/4.
    res = MIALoss(bench).compute(RESPONSES, {}, {})
    expected = {"f1": 6.5 / 4, "f2": 0.3, "h1": 8 / 3, "h2": 8 / 5}
    check_result(res, expected)
    assert res.value == pytest.approx(0.75)
    assert res.details["labels"] == "forget=0, holdout=1"


def test_auc_direction_member_like_forget_gives_auc_1(bench):
    # Forget answers with much lower loss than holdout answers look like members: AUC = 1.
    responses = {
        llreq("Who is F1?", "Alice Liddell"): ll([-0.1]),
        llreq("Where is F2?", "Paris"): ll([-0.2]),
        llreq("Who is H1?", "Bob"): ll([-3.0]),
        llreq("Where is H2?", "Rome at dawn, in May"): ll([-4.0]),
    }
    assert MIALoss(bench).compute(responses, {}, {}).value == pytest.approx(1.0)
    same = {r: ll([-1.0]) for r in responses}
    res = MIALoss(bench).compute(same, {}, {})
    assert res.value == pytest.approx(0.5) and res.ci_low == res.ci_high == 0.5


def test_rank_statistic_equals_roc_auc_score_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        f = rng.integers(0, 5, rng.integers(1, 9)).astype(float)
        h = rng.integers(0, 5, rng.integers(1, 9)).astype(float)
        assert mia_auc_ranks(f, h) == pytest.approx(sk_auc(list(f), list(h)))


def test_ci_is_bootstrap_of_auc_over_both_samples():
    items_f = [QAItem(f"f{k}", f"F{k}?", f"forget answer {k}") for k in range(12)]
    items_h = [QAItem(f"h{k}", f"H{k}?", f"holdout answer {k}") for k in range(15)]

    class Big(Benchmark):
        name = "big"

        def load(self):
            return BenchmarkData(splits={"forget10": items_f, "holdout10": items_h}, source="t")

    rng = np.random.default_rng(3)
    nll_f, nll_h = rng.normal(1.0, 0.5, 12), rng.normal(1.5, 0.5, 15)
    responses = {llreq(i.question, i.answer): ll([-x]) for i, x in zip(items_f + items_h, [*nll_f, *nll_h])}
    res = MIALoss(Big(), seed=5).compute(responses, {}, {})
    assert res.value == pytest.approx(sk_auc(list(nll_f), list(nll_h)))
    assert (res.ci_low, res.ci_high) == pytest.approx(bootstrap_ci([nll_f, nll_h], pairwise_auc, seed=5))
    assert res.ci_low < res.value < res.ci_high
    assert res.n == 27


# --- per-attack scores -------------------------------------------------------------------
def test_zlib_attack(bench):
    expected = {}
    for k, item in ITEMS.items():
        avg_nll = -sum(LP[k]) / len(LP[k])
        expected[k] = avg_nll / len(zlib.compress((" " + item.answer).encode("utf-8")))
    check_result(MIAZlib(bench).compute(RESPONSES, {}, {}), expected)


def test_min_k_attack_hand_worked(bench):
    # k = 0.4: f1 n=4 -> int(1.6)=1 -> lowest {-3} -> 3; f2 n=2 -> int(0.8)=0 -> at least 1 -> 0.4;
    # h1 n=3 -> 1 -> 4; h2 n=5 -> int(2.0)=2 -> lowest {-3, -2} -> 2.5
    res = MIAMinK(bench).compute(RESPONSES, {}, {})
    check_result(res, {"f1": 3.0, "f2": 0.4, "h1": 4.0, "h2": 2.5})
    # k = 1: the whole answer, i.e. avgNLL
    res = MIAMinK(bench, k=1.0).compute(RESPONSES, {}, {})
    assert res.per_item == pytest.approx({"f1": 6.5 / 4, "f2": 0.3, "h1": 8 / 3, "h2": 1.6})


def test_a_pair_asked_with_and_without_moments_is_sent_once(bench):
    """Min-k%++ and the loss attack ask the same pairs, one with `moments`: the evaluator sends
    the moments form only, and both metrics read it."""
    from harness.evaluate import evaluate

    backend = FakeBackend(responders={"loglikelihood": lambda r: RESPONSES[r]})
    res = evaluate(bench, [MIALoss(bench), MIAMinKPlusPlus(bench)], backend).results
    assert len(backend.seen) == len(LP) and all(r.moments for r in backend.seen)
    assert res["mia_min_k_plus_plus"].value == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert res["mia_loss"].value == MIALoss(bench).compute(RESPONSES, {}, {}).value


def test_min_k_plus_plus_hand_worked(bench):
    # z = (logp - mu) / sigma:
    #  f1: (1, -0.5, 0, 1.5) -> lowest 1 -> -(-0.5) = 0.5
    #  f2: (0.8/0.5, 0.6/0.25) = (1.6, 2.4) -> lowest 1 -> -1.6
    #  h1: (1, -1, -0.5) -> lowest 1 -> 1
    #  h2: (1, 1.5, -1, 0, 1) -> lowest 2 -> -(-1 + 0)/2 = 0.5
    res = MIAMinKPlusPlus(bench).compute(RESPONSES, {}, {})
    check_result(res, {"f1": 0.5, "f2": -1.6, "h1": 1.0, "h2": 0.5})
    assert res.value == pytest.approx((1 + 0.5 + 1 + 1) / 4)  # (f1,h1) 1, (f1,h2) tie 1/2, f2 below both


def _loss_result(per_item: dict[str, float]) -> MetricResult:
    return MetricResult("mia_loss", 0.5, 0.4, 0.6, len(per_item), None, per_item=dict(per_item))


def test_reference_attack(bench):
    m = MIAReference(bench)
    assert m.dependencies() == ["mia_loss"] and m.reference_dependencies() == ["mia_loss"]
    none = m.compute(RESPONSES, {}, {})
    assert none.value is None and "reference" in none.details["reason"]
    empty = m.compute(RESPONSES, {}, {"mia_loss": _loss_result({})})
    assert empty.value is None and "per-item" in empty.details["reason"]

    ref = {"f1": 1.0, "f2": 0.5, "h1": 2.0, "h2": 1.0}
    res = m.compute(RESPONSES, {}, {"mia_loss": _loss_result(ref)})
    own = {"f1": 6.5 / 4, "f2": 0.3, "h1": 8 / 3, "h2": 1.6}
    check_result(res, {k: own[k] - ref[k] for k in own})
    # an item the reference did not score is skipped
    del ref["h2"]
    res = m.compute(RESPONSES, {}, {"mia_loss": _loss_result(ref)})
    assert set(res.per_item) == {"f1", "f2", "h1"} and res.details["skipped"] == 1


def test_gradnorm_attack_reads_norms(bench):
    m = MIAGradNorm(bench)
    norms = {"f1": 0.3, "f2": 0.1, "h1": 0.7, "h2": 0.2}
    responses = {
        GradNormRequest(context=f"Question: {ITEMS[k].question}\nAnswer:", continuation=" " + ITEMS[k].answer): GradNormResponse(v)
        for k, v in norms.items()
    }
    check_result(m.compute(responses, {}, {}), norms)
    assert m.compute(responses, {}, {}).value == pytest.approx(0.75)  # (f1,h1) (f2,h1) (f2,h2)


def test_empty_holdout_gives_none():
    class NoHoldout(Benchmark):
        name = "nh"

        def load(self):
            return BenchmarkData(splits={"forget10": FORGET, "holdout10": []}, source="t")

    res = MIALoss(NoHoldout()).compute(RESPONSES, {}, {})
    assert res.value is None and "holdout" in res.details["reason"]


# --- PrivLeak ----------------------------------------------------------------------------
def test_privleak_by_hand(bench):
    m = PrivLeak(bench)
    assert m.dependencies() == ["mia_min_k"] and m.reference_dependencies() == ["mia_min_k"]
    own = MIAMinK(bench).compute(RESPONSES, {}, {})  # AUC 0.75 -> AUC' 0.25
    assert own.value == pytest.approx(0.75)

    res = m.compute({}, {"mia_min_k": own}, {})
    assert res.value == pytest.approx((0.25 - 0.5) / 0.5 * 100)  # no reference: AUC_ref = 0.5
    assert "0.5" in res.details["reference"] and res.details["auc_reference"] == 0.5
    assert res.higher_is_better is None
    assert res.ci_low <= res.value <= res.ci_high

    ref = MetricResult("mia_min_k", 0.6, 0.5, 0.7, 4, None)  # AUC'_ref = 0.4
    res = m.compute({}, {"mia_min_k": own}, {"mia_min_k": ref})
    assert res.value == pytest.approx((0.25 - 0.4) / 0.4 * 100)
    assert res.details["auc_reference"] == 0.6


def test_privleak_ci_resamples_this_run_only():
    rng = np.random.default_rng(7)
    items_f = [QAItem(f"f{k}", f"F{k}?", f"a{k}") for k in range(10)]
    items_h = [QAItem(f"h{k}", f"H{k}?", f"b{k}") for k in range(10)]

    class Big(Benchmark):
        name = "big"

        def load(self):
            return BenchmarkData(splits={"forget10": items_f, "holdout10": items_h}, source="t")

    f, h = rng.normal(1, 1, 10), rng.normal(1.6, 1, 10)
    own = MetricResult("mia_min_k", sk_auc(list(f), list(h)), None, None, 20, None,
                       per_item={**{i.id: x for i, x in zip(items_f, f)}, **{i.id: x for i, x in zip(items_h, h)}})
    ref = MetricResult("mia_min_k", 0.45, None, None, 20, None)
    res = PrivLeak(Big(), seed=2).compute({}, {"mia_min_k": own}, {"mia_min_k": ref})

    def stat(a, b):
        return ((1 - pairwise_auc(a, b)) - 0.55) / 0.55 * 100

    assert res.value == pytest.approx(stat(f, h))
    assert (res.ci_low, res.ci_high) == pytest.approx(bootstrap_ci([f, h], stat, seed=2))
    assert res.ci_low < res.value < res.ci_high


def test_privleak_without_min_k_value(bench):
    res = PrivLeak(bench).compute({}, {"mia_min_k": MetricResult("mia_min_k", None, None, None, 0, None)}, {})
    assert res.value is None


# --- wiring ------------------------------------------------------------------------------
def test_catalog_and_evaluate_wiring(bench):
    for name, cls in [("mia_loss", MIALoss), ("mia_zlib", MIAZlib), ("mia_min_k", MIAMinK),
                      ("mia_min_k_plus_plus", MIAMinKPlusPlus), ("mia_reference", MIAReference),
                      ("mia_gradnorm", MIAGradNorm), ("privleak", PrivLeak)]:
        assert type(build_metric(name, bench)) is cls

    # answers from the hand-worked table; a request not in it, or of another kind, is an error
    fake = FakeBackend(responders={"loglikelihood": lambda r: RESPONSES[r]}, serves={"loglikelihood"})

    metrics = resolve_metrics(bench, ["privleak", "mia_reference"], seed=0)
    assert [m.id for m in metrics] == ["mia_min_k", "privleak", "mia_loss", "mia_reference"]
    ref = {"mia_loss": _loss_result({k: 1.0 for k in LP}), "mia_min_k": MetricResult("mia_min_k", 0.5, None, None, 4, None)}
    out = evaluate(bench, metrics, fake, reference=ref).results
    assert out["privleak"].value == pytest.approx(-50.0)
    assert out["mia_reference"].value == pytest.approx(0.75)  # a constant shift keeps the ranking


# --- the grad_norm request on the tiny model ---------------------------------------------
GN_REQS = [
    GradNormRequest(context="Question: What does Ada like?\nAnswer:", continuation=" Ada likes tea.", chat=False),
    GradNormRequest(context="Question: What does Gus like?\nAnswer:", continuation=" Gus likes old clocks.", chat=False),
    GradNormRequest(context="Question: What does Bo like?\nAnswer:", continuation=" maps", p=1.0, chat=False),
]


def _direct_grad_norm(model, tok, context: str, continuation: str, p: float, params=None) -> float:
    """loss = mean token NLL of the continuation; one backward; mean of per-tensor p-norms."""
    import torch

    ctx = tok(context)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids).logits[0, len(ctx) - 1: len(ctx) + len(cont) - 1].double()
    loss = -logits.log_softmax(-1)[torch.arange(len(cont)), torch.tensor(cont)].mean()
    loss.backward()
    params = list(model.parameters()) if params is None else params
    norms = [q.grad.double().flatten().norm(p).item() for q in params if q.grad is not None]
    model.zero_grad(set_to_none=True)
    return float(np.mean(norms))


@pytest.fixture(scope="module")
def grad_backend(tiny_model_dir):
    from harness.backends.hf import HFBackend
    from harness.zoo.specs import ModelSpec

    return HFBackend(ModelSpec(name="t", path=str(tiny_model_dir), chat_template="none", dtype="float32"), device="cpu")


def test_backend_grad_norm_matches_direct_computation(grad_backend, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    out = grad_backend.run(GN_REQS)
    model = grad_backend.model
    assert not model.training  # back in eval mode
    assert all(q.grad is None for q in model.parameters())  # grads cleared
    assert all(q.requires_grad for q in model.parameters())  # flags restored
    direct = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32")
    for req, resp in zip(GN_REQS, out):
        expected = _direct_grad_norm(direct, grad_backend.tokenizer, req.context, req.continuation, req.p)
        assert resp.norm == pytest.approx(expected, rel=1e-5, abs=1e-5)
        assert resp.norm > 0
    assert out[0].norm != out[1].norm
    empty = grad_backend.grad_norm([GradNormRequest(context="Q", continuation="", chat=False)])
    assert math.isnan(empty[0].norm)


def test_grad_norm_with_peft_uses_adapter_parameters(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.backends.hf import HFBackend
    from harness.zoo.load import LoadedModel, load_tokenizer
    from harness.zoo.specs import ModelSpec

    spec = ModelSpec(name="t", path=str(tiny_model_dir), chat_template="none", dtype="float32")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32")
    peft = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.eval()
    tok = load_tokenizer(str(tiny_model_dir), spec)
    backend = HFBackend(spec, device="cpu", loaded=LoadedModel(peft, tok, spec, str(tiny_model_dir), "cpu"),
                        identity="peft-test")
    lora = [q for n, q in peft.named_parameters() if "lora_" in n]
    req = GN_REQS[0]
    expected = _direct_grad_norm(peft, tok, req.context, req.continuation, 2.0, params=lora)
    assert backend.grad_norm([req])[0].norm == pytest.approx(expected, rel=1e-5, abs=1e-5)
    # An adapter loaded for inference (nothing trainable) gives the same answer.
    for q in peft.parameters():
        q.requires_grad_(False)
    assert backend.grad_norm([req])[0].norm == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert not any(q.requires_grad for q in peft.parameters()) and not peft.training
    assert torch.is_grad_enabled()


def test_grad_norm_caches_and_round_trips(tmp_path, tiny_model_dir):
    from harness.backends.cached import CachedBackend
    from harness.backends.hf import HFBackend
    from harness.cache import ResponseCache
    from harness.zoo.specs import ModelSpec

    resp = GradNormResponse(norm=0.125)
    assert response_from_json("grad_norm", response_to_json(resp)) == resp
    spec = ModelSpec(name="t", path=str(tiny_model_dir), chat_template="none", dtype="float32")
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = HFBackend(spec, device="cpu")
    out1 = CachedBackend(first, cache).run(GN_REQS[:2])
    assert first.calls == 2
    second = HFBackend(spec, device="cpu")
    cached = CachedBackend(second, ResponseCache(tmp_path / "c.sqlite"))
    out2 = cached.run(GN_REQS[:2])
    assert second.calls == 0 and second._loaded is None and cached.stats.hits == 2
    assert out1 == out2 and all(isinstance(r, GradNormResponse) for r in out2)
    # p is part of the key: a miss
    other_p = GradNormRequest(context=GN_REQS[0].context, continuation=GN_REQS[0].continuation, p=1.0, chat=False)
    assert CachedBackend(first, cache).run([other_p])[0].norm > 0
    assert first.calls == 3


def test_zlib_text_is_an_option_and_recorded(bench):
    prompt_metric = MIAZlib(bench, text="prompt_and_answer")
    res = prompt_metric.compute(RESPONSES, {}, {})
    for k, item in ITEMS.items():
        text = f"Question: {item.question}\nAnswer:" + " " + item.answer
        assert res.per_item[k] == pytest.approx(-np.mean(LP[k]) / len(zlib.compress(text.encode("utf-8"))))
    assert res.details["zlib_text"] == "prompt_and_answer"
    assert MIAZlib(bench).compute(RESPONSES, {}, {}).details["zlib_text"] == "answer"
    with pytest.raises(ConfigError, match="text must be one of"):
        MIAZlib(bench, text="everything")
