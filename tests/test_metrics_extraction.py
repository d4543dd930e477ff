"""Extraction strength, exact memorisation, normalised probability and MUSE ROUGE-L F1,
each against an independent computation in the test (by hand, or rouge-score called directly)."""

from __future__ import annotations

import math

import pytest
from rouge_score import rouge_scorer

from harness.api.benchmark import Benchmark, BenchmarkData, QAItem
from harness.catalog import build_metric
from harness.metrics.memorisation import ExactMemorisation, ExtractionStrength
from harness.metrics.normalised_probability import NormalisedProbability
from harness.metrics.probability import Probability
from harness.metrics.rouge import KnowMemRougeF1, RougeLRecall, VerbMemRougeF1
from harness.api.requests import GenerateRequest, GenerateResponse, LoglikelihoodRequest, LoglikelihoodResponse

FORGET = [
    QAItem("f1", "Q1?", "one two three four", perturbed_answers=("five six", "seven")),
    QAItem("f2", "Q2?", "alpha beta", perturbed_answers=("gamma",)),
    QAItem("f3", "Q3?", "solo"),  # no perturbed answers
]
RETAIN = [QAItem("r1", "R1?", "the dog is running fast"), QAItem("r2", "R2?", "cats run home")]
VERB = [QAItem("v1", "Once upon a time", "the dog is running fast")]


class MemBench(Benchmark):
    name = "mem-fake"

    def load(self) -> BenchmarkData:
        return BenchmarkData(splits={"forget10": FORGET, "retain90": RETAIN, "holdout10": [], "verbmem": VERB},
                             source="test")

    def generation_budget(self, item):
        # MUSE-like budgets: 128 tokens for verbatim continuations, 32 for QA
        return (128, ()) if item.id.startswith("v") else (32, ("\nQuestion",))


def llreq(question: str, answer: str) -> LoglikelihoodRequest:
    return LoglikelihoodRequest(context=f"Question: {question}\nAnswer:", continuation=" " + answer)


def tf(greedy: list[bool], logprobs: list[float] | None = None) -> LoglikelihoodResponse:
    n = len(greedy)
    return LoglikelihoodResponse(logprobs or [-1.0] * n, list(greedy), [-2.0] * n, [1.0] * n)


@pytest.fixture
def bench() -> MemBench:
    return MemBench()


def _es(bench, greedy: list[bool], compat: bool = False) -> float:
    item = QAItem("x", "X?", "a b c")
    m = ExtractionStrength(bench, "forget", reference_compat=compat)
    return m.item_value(item, {llreq("X?", "a b c"): tf(greedy)})


# --- extraction strength ---------------------------------------------------------------
@pytest.mark.parametrize(
    "greedy, es, es_compat",
    [
        ([True, True, True, True], 1.0, 1.0),  # k = 0
        ([False, True, True, True], 0.75, 0.75),  # k = 1
        ([True, False, True, True], 0.5, 0.5),  # k = 2: the matched suffix starts after the miss
        ([False, False, False, True], 0.25, 0.25),  # k = 3
        ([True, True, True, False], 0.0, 0.25),  # no suffix: k = 4 (ES 0); compat stops at k = 3
        ([False, False, False, False], 0.0, 0.25),
        ([False], 0.0, 1.0),  # one token: the quirk's minimum 1/|y| is 1
        ([True], 1.0, 1.0),
    ],
)
def test_extraction_strength_by_hand(bench, greedy, es, es_compat):
    assert _es(bench, greedy) == pytest.approx(es)
    assert _es(bench, greedy, compat=True) == pytest.approx(es_compat)


def test_extraction_strength_metric(bench):
    responses = {
        llreq("Q1?", "one two three four"): tf([False, True, False, True, True]),  # k = 3 of 5 -> 0.4
        llreq("Q2?", "alpha beta"): tf([True, False]),  # k = 2 of 2 -> 0 (compat 0.5)
        llreq("Q3?", "solo"): tf([]),  # no tokens: skipped
    }
    m = ExtractionStrength(bench, "forget")
    assert m.requests() == Probability(bench, "forget").requests()  # the same request as probability
    res = m.compute(responses, {}, {})
    assert res.per_item == pytest.approx({"f1": 0.4, "f2": 0.0})
    assert res.value == pytest.approx(0.2) and res.n == 2
    assert res.details == {"skipped": 1, "reference_compat": False}
    assert res.higher_is_better is False  # a knowledge score on the forget split
    compat = ExtractionStrength(bench, "forget", reference_compat=True).compute(responses, {}, {})
    assert compat.per_item == pytest.approx({"f1": 0.4, "f2": 0.5})
    assert compat.details["reference_compat"] is True
    assert ExtractionStrength(bench, "retain").compute(
        {llreq(i.question, i.answer): tf([True]) for i in RETAIN}, {}, {}).higher_is_better is True


# --- exact memorisation ----------------------------------------------------------------
def test_exact_memorisation_by_hand(bench):
    responses = {
        llreq("Q1?", "one two three four"): tf([False, True, False, True, True]),  # 3/5
        llreq("Q2?", "alpha beta"): tf([True, False]),  # 1/2
        llreq("Q3?", "solo"): tf([True]),  # 1
    }
    res = ExactMemorisation(bench, "forget").compute(responses, {}, {})
    assert res.per_item == pytest.approx({"f1": 0.6, "f2": 0.5, "f3": 1.0})
    assert res.value == pytest.approx((0.6 + 0.5 + 1.0) / 3)
    assert res.ci_low <= res.value <= res.ci_high


# --- normalised probability ------------------------------------------------------------
def test_normalised_probability_by_hand(bench):
    responses = {
        llreq("Q1?", "one two three four"): tf([True] * 2, [-0.25, -0.75]),  # P_true = e^-0.5
        llreq("Q1?", "five six"): tf([True] * 2, [-1.0, -1.0]),  # e^-1
        llreq("Q1?", "seven"): tf([True], [-2.0]),  # e^-2
        llreq("Q2?", "alpha beta"): tf([True], [-3.0]),  # e^-3
        llreq("Q2?", "gamma"): tf([True, True, True], [-0.5, -0.5, -0.5]),  # e^-0.5
    }
    m = NormalisedProbability(bench, "forget")
    assert set(m.requests()) == set(responses)  # f3 has no perturbed answers: nothing asked
    res = m.compute(responses, {}, {})
    f1 = math.exp(-0.5) / (math.exp(-0.5) + math.exp(-1) + math.exp(-2))
    f2 = math.exp(-3) / (math.exp(-3) + math.exp(-0.5))
    assert res.per_item == pytest.approx({"f1": f1, "f2": f2})
    assert res.value == pytest.approx((f1 + f2) / 2)
    assert res.details["skipped"] == 1
    assert res.higher_is_better is False  # forget split


# --- MUSE ROUGE-L F1 -------------------------------------------------------------------
def test_rouge_f1_stemmer_off_by_default_and_budget(bench):
    gen = "a dog runs fast"
    responses = {
        GenerateRequest(prompt="Question: R1?\nAnswer:", max_new_tokens=32, stop=("\nQuestion",)): GenerateResponse([gen + "\nQuestion: x"], [5]),
        GenerateRequest(prompt="Question: R2?\nAnswer:", max_new_tokens=32, stop=("\nQuestion",)): GenerateResponse(["cat running home"], [3]),
    }
    m = KnowMemRougeF1(bench, "retain")
    assert m.requests() == list(responses)
    res = m.compute(responses, {}, {})
    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    stem = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    exp_plain = {"r1": plain.score("the dog is running fast", gen)["rougeL"].fmeasure,
                 "r2": plain.score("cats run home", "cat running home")["rougeL"].fmeasure}
    exp_stem = {"r1": stem.score("the dog is running fast", gen)["rougeL"].fmeasure,
                "r2": stem.score("cats run home", "cat running home")["rougeL"].fmeasure}
    assert exp_plain != pytest.approx(exp_stem)  # "running"/"runs", "cats"/"cat" stem alike
    # by hand, no stemmer: r1 LCS "dog fast" = 2, P = 2/4, R = 2/5 -> F1 = 4/9; r2 LCS "home" -> 1/3
    assert exp_plain == pytest.approx({"r1": 4 / 9, "r2": 1 / 3})
    assert res.per_item == pytest.approx(exp_plain)
    assert res.details["use_stemmer"] is False
    stemmed = KnowMemRougeF1(bench, "retain", use_stemmer=True).compute(responses, {}, {})
    assert stemmed.per_item == pytest.approx(exp_stem)
    assert stemmed.details["use_stemmer"] is True
    # the TOFU recall metric still stems
    assert RougeLRecall(bench, "retain").compute(responses, {}, {}).per_item["r2"] == pytest.approx(
        stem.score("cats run home", "cat running home")["rougeL"].recall)


def test_verbmem_uses_the_benchmark_budget(bench):
    m = VerbMemRougeF1(bench, "verbmem")
    (req,) = m.requests()
    assert req.max_new_tokens == 128 and req.stop == ()
    res = m.compute({req: GenerateResponse(["the dog is running fast"], [5])}, {}, {})
    assert res.per_item == {"v1": 1.0} and res.details["use_stemmer"] is False


def test_catalog_entries(bench):
    for mid, cls in [("extraction_strength@forget", ExtractionStrength), ("exact_memorisation@forget", ExactMemorisation),
                     ("normalised_probability@retain", NormalisedProbability),
                     ("verbmem_rouge_f1@verbmem", VerbMemRougeF1), ("knowmem_rouge_f1@retain", KnowMemRougeF1)]:
        assert type(build_metric(mid, bench)) is cls
