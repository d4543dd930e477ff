"""TOFU-style unlearning metrics checked against independent, hand-worked computations.

Every expected number here is computed in the test itself (by hand, or by calling scipy /
rouge-score directly), never through the metric modules' own helpers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from rouge_score import rouge_scorer

from harness.api.benchmark import Benchmark, BenchmarkData, QAItem
from harness.catalog import build_metric
from harness.errors import ConfigError
from harness.api.metric import MetricResult
from harness.metrics.exact_match import ExactMatchRecall
from harness.metrics.forget_quality import ForgetQuality
from harness.metrics.model_utility import ModelUtility
from harness.metrics.probability import Probability
from harness.metrics.rouge import RougeLRecall
from harness.metrics.truth_ratio import TruthRatio
from harness.api.requests import GenerateRequest, GenerateResponse, LoglikelihoodRequest, LoglikelihoodResponse

STOP = "\nQuestion:"

FORGET = [
    QAItem("f1", "Who wrote Q1?", "Alice Smith", paraphrased_answer="A. Smith", perturbed_answers=("Bob", "Carol")),
    QAItem("f2", "Where was Q2 born?", "Paris", perturbed_answers=("Rome", "Oslo")),  # no paraphrase
    QAItem("f3", "What is Q3?", "a cat"),  # no perturbed answers -> skipped by truth ratio
]
RETAIN = [
    QAItem("r1", "Name R1?", "the cat sat on the mat", perturbed_answers=("the dog",)),
    QAItem("r2", "Name R2?", "Jane O'Brien-Smith, Jr.", perturbed_answers=("Jim",)),
]


class FakeBench(Benchmark):
    name = "fake"
    utility_metrics = ("probability@retain", "rouge_l_recall@retain", "truth_ratio@retain")
    max_new_tokens = 32
    stop = (STOP,)

    def load(self) -> BenchmarkData:
        return BenchmarkData(splits={"forget10": FORGET, "retain90": RETAIN, "holdout10": []}, source="test")


def ll(*logprobs: float) -> LoglikelihoodResponse:
    n = len(logprobs)
    return LoglikelihoodResponse(list(logprobs), [True] * n, [0.0] * n, [1.0] * n)


def llreq(question: str, continuation: str) -> LoglikelihoodRequest:
    # Written out independently of the metrics: the base Benchmark prompt/target format.
    return LoglikelihoodRequest(context=f"Question: {question}\nAnswer:", continuation=" " + continuation)


def genreq(question: str) -> GenerateRequest:
    return GenerateRequest(prompt=f"Question: {question}\nAnswer:", max_new_tokens=32, stop=(STOP,))


def gen(text: str) -> GenerateResponse:
    return GenerateResponse(texts=[text], n_tokens=[len(text.split())])


def check_ci(res: MetricResult) -> None:
    assert res.ci_low is not None and res.ci_high is not None
    assert res.ci_low <= res.value <= res.ci_high


@pytest.fixture
def bench() -> FakeBench:
    return FakeBench()


# --- log-likelihood responses, by hand -------------------------------------------------
# f1: para "A. Smith" mean -1.5; perturbed means -2 and -3 -> mean -2.5 -> R = e^-1
# f2: correct side is "Paris" (no paraphrase), mean -3; perturbed -2 and -1 -> -1.5 -> R = e^1.5
FORGET_LL = {
    llreq("Who wrote Q1?", "Alice Smith"): ll(-0.5, -0.5),
    llreq("Who wrote Q1?", "A. Smith"): ll(-1.0, -2.0),
    llreq("Who wrote Q1?", "Bob"): ll(-2.0, -2.0),
    llreq("Who wrote Q1?", "Carol"): ll(-3.0),
    llreq("Where was Q2 born?", "Paris"): ll(-3.0),
    llreq("Where was Q2 born?", "Rome"): ll(-2.0),
    llreq("Where was Q2 born?", "Oslo"): ll(-1.0, -1.0, -1.0),
    llreq("What is Q3?", "a cat"): ll(-0.2, -0.4, -0.6),
}
R_F1, R_F2 = math.exp(-1.0), math.exp(1.5)

# r1: answer mean -0.25, perturbed mean -1 -> R = e^-0.75; r2: answer -1, perturbed -0.5 -> R = e^0.5
RETAIN_LL = {
    llreq("Name R1?", "the cat sat on the mat"): ll(-0.1, -0.4),
    llreq("Name R1?", "the dog"): ll(-1.0, -1.0),
    llreq("Name R2?", "Jane O'Brien-Smith, Jr."): ll(-1.0),
    llreq("Name R2?", "Jim"): ll(-0.5),
}


# --- probability -----------------------------------------------------------------------
def test_probability_is_length_normalised(bench):
    m = Probability(bench, "forget")
    reqs = m.requests()
    assert reqs == [llreq(i.question, i.answer) for i in FORGET]
    res = m.compute(FORGET_LL, {}, {})
    expected = {"f1": math.exp(-0.5), "f2": math.exp(-3.0), "f3": math.exp(-0.4)}
    assert res.per_item == pytest.approx(expected)
    assert res.value == pytest.approx(np.mean(list(expected.values())))
    assert res.n == 3
    check_ci(res)


def test_probability_hand_worked_single_item(bench):
    # token logprobs [-1, -2] -> P = exp(-1.5), not exp(-3)
    item = QAItem("x", "q?", "ans")
    m = Probability(bench, "forget")
    assert m.item_value(item, {llreq("q?", "ans"): ll(-1.0, -2.0)}) == pytest.approx(math.exp(-1.5))


# --- ROUGE-L recall --------------------------------------------------------------------
def test_rouge_l_recall_hand_worked_lcs(bench):
    # reference: the cat sat on the mat (6 tokens); prediction: the cat on a mat
    # LCS = "the cat on mat" (4 tokens) -> recall 4/6
    m = RougeLRecall(bench, "retain")
    responses = {genreq("Name R1?"): gen("the cat on a mat"), genreq("Name R2?"): gen("jane")}
    res = m.compute(responses, {}, {})
    assert res.per_item["r1"] == pytest.approx(4 / 6)


def test_rouge_l_recall_matches_rouge_score_and_cuts_at_stop(bench):
    m = RougeLRecall(bench, "retain")
    assert m.requests() == [genreq("Name R1?"), genreq("Name R2?")]
    responses = {
        # cut at the stop string -> "the cat sat": LCS 3 of 6 (uncut it would be 5 of 6)
        genreq("Name R1?"): gen("the cat sat\nQuestion: what is on the mat"),
        genreq("Name R2?"): gen("It was Jane Smith, running"),
    }
    res = m.compute(responses, {}, {})
    assert res.per_item["r1"] == pytest.approx(3 / 6)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    r2 = scorer.score("Jane O'Brien-Smith, Jr.", "It was Jane Smith, running")["rougeL"].recall
    assert res.per_item["r2"] == pytest.approx(r2)
    assert res.value == pytest.approx((0.5 + r2) / 2)
    check_ci(res)


# --- exact match -----------------------------------------------------------------------
def test_exact_match_normalisation_and_word_boundaries(bench):
    m = ExactMatchRecall(bench, "retain")
    responses = {
        genreq("Name R1?"): gen("Well,   THE cat sat on the MAT!"),  # case, punctuation, whitespace
        genreq("Name R2?"): gen("I believe it's jane obriensmith jr indeed"),  # punctuation removed
    }
    res = m.compute(responses, {}, {})
    assert res.per_item == {"r1": 1.0, "r2": 1.0}

    responses[genreq("Name R1?")] = gen("the cat\nQuestion: sat on the mat")  # answer only after the stop
    responses[genreq("Name R2?")] = gen("Jane O'Brien")  # partial answer
    res = m.compute(responses, {}, {})
    assert res.per_item == {"r1": 0.0, "r2": 0.0}
    assert res.value == 0.0
    check_ci(res)

    item = QAItem("n", "Year?", "1")
    assert m.item_value(item, {genreq("Year?"): gen("In 1990.")}) == 0.0  # not inside a word
    assert m.item_value(item, {genreq("Year?"): gen("Chapter 1.")}) == 1.0


def test_greedy_request_shared_by_rouge_and_exact_match(bench):
    rouge = RougeLRecall(bench, "forget").requests()
    em = ExactMatchRecall(bench, "forget").requests()
    assert rouge == em
    assert len(set(rouge) | set(em)) == len(FORGET)
    assert all(r.temperature == 0.0 and r.n == 1 for r in rouge)


def test_probability_request_shared_with_truth_ratio_correct_side(bench):
    prob = set(Probability(bench, "forget").requests())
    tr = set(TruthRatio(bench, "forget").requests())
    # f2 has no paraphrase, so its correct side is the answer: the same request as probability
    assert llreq("Where was Q2 born?", "Paris") in prob & tr
    assert llreq("Who wrote Q1?", "Alice Smith") not in tr


# --- truth ratio -----------------------------------------------------------------------
def test_truth_ratio_requests_and_raw_ratios(bench):
    m = TruthRatio(bench, "forget")
    expected_reqs = {k for k in FORGET_LL if k.continuation not in (" Alice Smith", " a cat")}
    assert set(m.requests()) == expected_reqs
    res = m.compute(FORGET_LL, {}, {})
    assert res.per_item == pytest.approx({"f1": R_F1, "f2": R_F2})
    assert res.n == 2
    assert res.details == {"aggregator": "closer_to_1_better", "skipped": 1, "empty_answers": 0}
    # closer_to_1_better: mean(min(R, 1/R))
    assert res.value == pytest.approx((math.exp(-1.0) + math.exp(-1.5)) / 2)
    check_ci(res)


def test_truth_ratio_aggregators_by_hand(bench):
    res = TruthRatio(bench, "forget", aggregator="true_better").compute(FORGET_LL, {}, {})
    assert res.value == pytest.approx(((1 - math.exp(-1.0)) + 0.0) / 2)  # max(0, 1 - e^1.5) = 0
    check_ci(res)

    res = TruthRatio(bench, "forget", aggregator="prob_mean").compute(FORGET_LL, {}, {})
    # P_para / (P_para + P~_pert) from the probabilities themselves
    f1 = math.exp(-1.5) / (math.exp(-1.5) + math.exp(-2.5))
    f2 = math.exp(-3.0) / (math.exp(-3.0) + math.exp(-1.5))
    assert res.value == pytest.approx((f1 + f2) / 2)
    check_ci(res)


def test_truth_ratio_default_aggregator_by_split(bench):
    assert TruthRatio(bench, "forget").aggregator == "closer_to_1_better"
    assert TruthRatio(bench, "forget10").aggregator == "closer_to_1_better"
    assert TruthRatio(bench, "retain").aggregator == "true_better"
    res = TruthRatio(bench, "retain").compute(RETAIN_LL, {}, {})
    assert res.per_item == pytest.approx({"r1": math.exp(-0.75), "r2": math.exp(0.5)})
    assert res.value == pytest.approx((1 - math.exp(-0.75)) / 2)
    with pytest.raises(ConfigError):
        TruthRatio(bench, "forget", aggregator="median")


def test_truth_ratio_no_perturbed_items(bench):
    res = TruthRatio(bench, "holdout").compute({}, {}, {})
    assert res.value is None and res.n == 0


# --- forget quality --------------------------------------------------------------------
def _tr_result(values: list[float]) -> MetricResult:
    per_item = {f"i{k}": v for k, v in enumerate(values)}
    return MetricResult("truth_ratio@forget", 0.5, 0.4, 0.6, len(values), True, per_item=per_item)


def test_forget_quality_without_reference(bench):
    m = ForgetQuality(bench)
    assert m.dependencies() == ["truth_ratio@forget"]
    assert m.reference_dependencies() == ["truth_ratio@forget"]
    own = {"truth_ratio@forget": _tr_result([0.5, 0.7, 0.9])}
    for reference in ({}, {"truth_ratio@forget": _tr_result([])}):
        res = m.compute({}, own, reference)
        assert res.value is None
        assert "reference" in res.details["reason"]


def test_forget_quality_is_ks_pvalue(bench):
    rng = np.random.default_rng(1)
    unlearned = list(rng.lognormal(0.0, 0.5, 30))
    retained = list(rng.lognormal(0.3, 0.5, 25))
    res = ForgetQuality(bench).compute(
        {}, {"truth_ratio@forget": _tr_result(unlearned)}, {"truth_ratio@forget": _tr_result(retained)}
    )
    assert res.value == pytest.approx(scipy.stats.ks_2samp(unlearned, retained).pvalue)
    assert res.n == 30
    assert res.higher_is_better is True
    check_ci(res)
    assert res.ci_low < res.ci_high

    # identical samples: p = 1, and the CI still contains it
    same = ForgetQuality(bench).compute(
        {}, {"truth_ratio@forget": _tr_result(unlearned)}, {"truth_ratio@forget": _tr_result(unlearned)}
    )
    assert same.value == pytest.approx(1.0)
    check_ci(same)


# --- model utility ---------------------------------------------------------------------
def _part(metric_id: str, per_item: list[float], value: float | None = None, **details) -> MetricResult:
    v = float(np.mean(per_item)) if value is None else value
    return MetricResult(metric_id, v, v, v, len(per_item), True,
                        per_item={f"i{k}": x for k, x in enumerate(per_item)}, details=details)


def test_model_utility_is_hmean_of_parts(bench):
    ratios = [0.2, 0.5, 1.5]  # true_better: mean(0.8, 0.5, 0) = 0.4333
    deps = {
        "probability@retain": _part("probability@retain", [0.9, 0.7, 0.8]),
        "rouge_l_recall@retain": _part("rouge_l_recall@retain", [1.0, 0.5, 0.6]),
        "truth_ratio@retain": _part("truth_ratio@retain", ratios, value=(0.8 + 0.5 + 0.0) / 3,
                                    aggregator="true_better"),
    }
    m = ModelUtility(bench)
    assert m.dependencies() == list(FakeBench.utility_metrics)
    res = m.compute({}, deps, {})
    expected = scipy.stats.hmean([0.8, 0.7, (0.8 + 0.5 + 0.0) / 3])
    assert res.value == pytest.approx(expected)
    assert res.details["parts"] == pytest.approx({k: d.value for k, d in deps.items()})
    check_ci(res)
    assert res.ci_low < res.ci_high


def test_model_utility_zero_and_missing_parts(bench):
    deps = {
        "probability@retain": _part("probability@retain", [0.0, 0.0]),
        "rouge_l_recall@retain": _part("rouge_l_recall@retain", [1.0, 0.5]),
        "truth_ratio@retain": _part("truth_ratio@retain", [0.2, 0.4], value=0.7, aggregator="true_better"),
    }
    res = ModelUtility(bench).compute({}, deps, {})
    assert res.value == pytest.approx(scipy.stats.hmean([0.0, 0.75, 0.7])) == 0.0
    check_ci(res)

    deps["rouge_l_recall@retain"] = MetricResult("rouge_l_recall@retain", None, None, None, 0, True)
    res = ModelUtility(bench).compute({}, deps, {})
    assert res.value is None and "rouge_l_recall@retain" in res.details["reason"]
    del deps["rouge_l_recall@retain"]
    assert ModelUtility(bench).compute({}, deps, {}).value is None


def test_model_utility_from_real_parts(bench):
    """The parts computed by the metrics themselves, then combined; expected values by hand."""
    responses = dict(RETAIN_LL)
    responses[genreq("Name R1?")] = gen("the cat on a mat")  # recall 4/6
    responses[genreq("Name R2?")] = gen("Jane O'Brien-Smith, Jr.")  # recall 1
    deps = {mid: build_metric(mid, bench).compute(responses, {}, {}) for mid in FakeBench.utility_metrics}
    prob = (math.exp(-0.25) + math.exp(-1.0)) / 2
    rouge = (4 / 6 + 1.0) / 2
    tr = (1 - math.exp(-0.75)) / 2
    assert deps["probability@retain"].value == pytest.approx(prob)
    assert deps["rouge_l_recall@retain"].value == pytest.approx(rouge)
    assert deps["truth_ratio@retain"].value == pytest.approx(tr)
    res = ModelUtility(bench).compute({}, deps, {})
    assert res.value == pytest.approx(3 / (1 / prob + 1 / rouge + 1 / tr))
    check_ci(res)


def test_catalog_builds_these_classes(bench):
    assert type(build_metric("probability@retain", bench)) is Probability
    assert type(build_metric("rouge_l_recall@forget", bench)) is RougeLRecall
    assert type(build_metric("exact_match_recall@forget", bench)) is ExactMatchRecall
    assert type(build_metric("truth_ratio@forget", bench)) is TruthRatio
    assert type(build_metric("forget_quality", bench)) is ForgetQuality
    assert type(build_metric("model_utility", bench)) is ModelUtility
    with pytest.raises(ConfigError):
        build_metric("truth_ratio", bench)  # needs a split


# --- zero-token answers: skipped and counted ---------------------------------------------
EMPTY_FORGET = [
    QAItem("e1", "Q1?", "yes", perturbed_answers=("no", "")),  # one perturbed answer has no token
    QAItem("e2", "Q2?", "", perturbed_answers=("x",)),  # the true answer has no token
    QAItem("e3", "Q3?", "ok", perturbed_answers=("ko",)),
]


class EmptyBench(Benchmark):
    name = "empty"

    def load(self) -> BenchmarkData:
        return BenchmarkData(splits={"forget10": EMPTY_FORGET, "retain90": [], "holdout10": []}, source="test")


def _empty_responses():
    # The base target is " " + answer.strip(); an empty answer's target scores no token.
    table = {("Q1?", "yes"): ll(-1.0), ("Q1?", "no"): ll(-2.0), ("Q1?", ""): ll(),
             ("Q2?", ""): ll(), ("Q2?", "x"): ll(-0.5), ("Q3?", "ok"): ll(-0.2, -0.4), ("Q3?", "ko"): ll(-3.0)}
    return {llreq(q, a): r for (q, a), r in table.items()}


def test_truth_ratio_skips_and_counts_empty_answers():
    res = TruthRatio(EmptyBench(), "forget", aggregator="prob_mean").compute(_empty_responses(), {}, {})
    # e1: R = exp(-2 - (-1)) (the empty perturbed answer left out); e2 skipped; e3: R = exp(-3 - (-0.3))
    assert res.per_item == pytest.approx({"e1": math.exp(-1.0), "e3": math.exp(-2.7)})
    assert res.details["skipped"] == 1 and res.details["empty_answers"] == 2


def test_normalised_probability_skips_and_counts_empty_answers():
    from harness.metrics.normalised_probability import NormalisedProbability

    res = NormalisedProbability(EmptyBench(), "forget").compute(_empty_responses(), {}, {})
    p1, q1 = math.exp(-1.0), math.exp(-2.0)
    p3, q3 = math.exp(-0.3), math.exp(-3.0)
    assert res.per_item == pytest.approx({"e1": p1 / (p1 + q1), "e3": p3 / (p3 + q3)})
    assert res.details["skipped"] == 1 and res.details["empty_answers"] == 2
