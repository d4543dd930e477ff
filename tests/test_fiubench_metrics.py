"""FIUBench's metric functions (harness.metrics.fiubench) against hand-worked numbers.

Every expected value is written out here from the definition (benchmarks.md §3), never
computed through the module's own helpers.
"""

from __future__ import annotations

import math

import pytest

from harness.metrics import fiubench_formulas as fm

L = math.log


def test_cut_generation_keeps_the_first_sentence_and_drops_text_without_a_period():
    assert fm.cut_generation("Born in Pelmora. Then more.") == "Born in Pelmora."
    assert fm.cut_generation("Born in Pelmora") == ""  # code quirk: s[:find('.') + 1] with find = -1


def test_rouge_l_recall_hand_worked():
    answer = "This person was born in Pelmora."
    # cut to "This person was born in Varnhal": LCS = this person was born in = 5 of 6 answer tokens
    assert fm.rouge_l_recall(answer, "This person was born in Varnhal. And more words.") == pytest.approx(5 / 6)
    # no period: FIUBench scores the empty string
    assert fm.rouge_l_recall(answer, "This person was born in Pelmora") == 0.0
    assert fm.rouge_l_recall(answer, "This person was born in Pelmora", cut=False) == pytest.approx(1.0)
    # stemmer on: running -> run, runs -> run, was -> wa on both sides: LCS he, run = 2 of 3
    assert fm.rouge_l_recall("He was running", "he runs.") == pytest.approx(2 / 3)
    assert fm.rouge_l_recall("He was running", "he runs.", use_stemmer=False) == pytest.approx(1 / 3)


def test_keyword_match_exact_match_and_ape():
    assert fm.keyword_match("The person is called PERPETUA Smith.", ["Perpetua", "Quennell"]) == pytest.approx(0.5)
    assert fm.keyword_match("a b c", ["a", "b", "c"]) == pytest.approx(1.0)
    assert fm.keyword_match("a a", ["a", "a", "a", "a"]) == pytest.approx(1.0)  # capped at 1
    assert fm.keyword_match("anything", []) == 0.0
    assert fm.exact_match(["x Pelmora.", "nothing."], [["Pelmora"], ["B+"]]) == pytest.approx(0.5)
    # APE: three generations for the one QA's paraphrased questions, two carry the keyword
    assert fm.ape([["in Pelmora.", "pelmora!", "Varnhal."]], [["Pelmora"]]) == pytest.approx(2 / 3)
    # two QAs: (1 + 0 + 0) and (0.5 + 0.5 + 1) over six generations
    gens = [["A", "b", "c"], ["Ada", "Ada", "Ada Lee"]]
    assert fm.ape(gens, [["A"], ["Ada", "Lee"]]) == pytest.approx((1 + 0 + 0 + 0.5 + 0.5 + 1) / 6)
    with pytest.raises(ValueError):
        fm.exact_match(["a"], [["a"], ["b"]])


def test_gpt_eval_score_parsing():
    assert fm.gpt_eval_score("0.85\nkey words: x\nexplanation", "a long enough answer") == pytest.approx(0.85)
    assert fm.gpt_eval_score("Score: **0.7**\n...", "a long enough answer") == pytest.approx(0.7)
    assert fm.gpt_eval_score("0.9", "Yes.") == 0.0  # 5 characters or fewer: 0, judge not asked
    assert fm.gpt_eval_score("great answer", "a long enough answer") == 0.0


def test_answer_probability_and_normalised_probability():
    # exp(mean(ln .5, ln .25)) = sqrt(.125)
    assert fm.answer_probability([L(0.5), L(0.25)]) == pytest.approx(math.sqrt(0.125))
    # P_a = .5, perturbed .25 and (geometric mean of .5, .125 =) .25: .5 / (.5 + .25 + .25)
    assert fm.normalised_answer_probability([L(0.5)], [[L(0.25)], [L(0.5), L(0.125)]]) == pytest.approx(0.5)


def test_truth_ratio_per_item_fiubench_orientation():
    # P_para = .5 (avgNLL ln 2); perturbed avgNLLs ln 4 and ln 8, mean 2.5 ln 2
    # R = exp(2.5 ln 2 - ln 2) = 2 ** 1.5 = P_para / geometric-mean(P_pert) = .5 / sqrt(.25 * .125)
    r = fm.truth_ratio([L(0.5), L(0.5)], [[L(0.25)], [L(0.125), L(0.125)]])
    assert r == pytest.approx(2 ** 1.5)
    assert r == pytest.approx(0.5 / math.sqrt(0.25 * 0.125))
    assert fm.truth_ratio_from_losses(L(2), [L(4), L(8)]) == pytest.approx(2 ** 1.5)
    assert fm.to_open_unlearning_ratio(r) == pytest.approx(2 ** -1.5)


def test_truth_ratio_aggregates_in_both_orientations():
    fiu = [2.0, 0.5, 4.0, 1.0]  # R = P_para / P_pert
    # forget mean(min(R, 1/R)) = (.5 + .5 + .25 + 1) / 4
    assert fm.truth_ratio_forget(fiu) == pytest.approx(2.25 / 4)
    # retain mean(max(0, 1 - 1/R)) = (.5 + 0 + .75 + 0) / 4
    assert fm.truth_ratio_retain(fiu) == pytest.approx(1.25 / 4)
    # open-unlearning orientation R' = 1/R = [.5, 2, .25, 1]: closer_to_1 = (.5+.5+.25+1)/4,
    # true_better mean(max(0, 1 - R')) = (.5 + 0 + .75 + 0)/4: the same numbers, computed by hand here
    ou = [0.5, 2.0, 0.25, 1.0]
    assert sum(min(x, 1 / x) for x in ou) / 4 == pytest.approx(fm.truth_ratio_forget(fiu))
    assert sum(max(0.0, 1 - x) for x in ou) / 4 == pytest.approx(fm.truth_ratio_retain(fiu))
    assert list(fm.to_open_unlearning_ratio(__import__("numpy").array(fiu))) == pytest.approx(ou)


def test_truth_ratio_aggregates_agree_with_the_tofu_metric():
    """harness.metrics.truth_ratio (open-unlearning orientation) aggregates R' = 1/R to the same values."""
    from harness.metrics.truth_ratio import TruthRatio

    fiu = [2.0, 0.5, 4.0, 1.0, 3.0]
    ou = [1 / x for x in fiu]
    forget, retain = TruthRatio.__new__(TruthRatio), TruthRatio.__new__(TruthRatio)
    forget.aggregator, retain.aggregator = "closer_to_1_better", "true_better"
    assert forget.aggregate(ou) == pytest.approx(fm.truth_ratio_forget(fiu))
    assert retain.aggregate(ou) == pytest.approx(fm.truth_ratio_retain(fiu))


def test_weighted_min_k_ten_tokens():
    lp = [-0.1 * i for i in range(1, 11)]  # sorted ascending: -1.0, -0.9, ..., -0.1
    # k = 1..5 tokens: means -1.0, -0.95, -0.9, -0.85, -0.8
    expected = (0.3 * math.exp(-1.0) + 0.3 * math.exp(-0.95) + 0.2 * math.exp(-0.9)
                + 0.1 * math.exp(-0.85) + 0.1 * math.exp(-0.8))
    assert fm.weighted_min_k(lp) == pytest.approx(expected)
    assert expected == pytest.approx(0.39537, abs=1e-5)


def test_weighted_min_k_short_answer_drops_empty_ratios_without_renormalising():
    lp = [-2.0, -1.0, -0.5, -0.1]
    # int(4 * k) = 0, 0, 1, 1, 2 -> the 10 % and 20 % terms are NaN and dropped (weights not renormalised)
    expected = 0.2 * math.exp(-2.0) + 0.1 * math.exp(-2.0) + 0.1 * math.exp(-1.5)
    assert fm.weighted_min_k(lp) == pytest.approx(expected)
    assert fm.weighted_min_k([-1.0]) == 0.0  # one token: every int(k) is 0


def test_weighted_min_k_plus_plus():
    z = fm.min_k_plus_plus_z([-1.0, -2.0], mu=[-0.5, -1.0], var=[0.25, 4.0])
    assert list(z) == pytest.approx([-1.0, -0.5])  # (-1 + .5) / .5, (-2 + 1) / 2
    # n = 2: only k = 50 % selects a token (the lowest z, -1)
    assert fm.weighted_min_k_plus_plus(z) == pytest.approx(0.1 * math.exp(-1.0))
    assert fm.mia_score([0.2, 0.4]) == pytest.approx(0.3)


def test_forget_quality_ks_and_orientation_invariance():
    p, d = fm.forget_quality([1, 2, 3, 4], [5, 6, 7, 8])
    assert d == pytest.approx(1.0)
    assert p == pytest.approx(2 / 70)  # exact two-sided: 2 / C(8, 4)
    a, b = [0.5, 1.2, 2.0, 3.0, 0.9], [1.1, 0.7, 2.5, 4.0, 1.5, 0.8]
    assert fm.forget_quality(a, b) == pytest.approx(fm.forget_quality([1 / x for x in a], [1 / x for x in b]))
    p_same, d_same = fm.forget_quality(a, a)
    assert (p_same, d_same) == (pytest.approx(1.0), pytest.approx(0.0))


def test_code_model_utility_harmonic_mean():
    assert fm.code_model_utility(0.5, 0.25, 1.0) == pytest.approx(3 / (2 + 4 + 1))
    assert fm.code_model_utility(0.5, 0.25, 1.0, gpt=0.5, em=0.5) == pytest.approx(5 / (2 + 4 + 1 + 2 + 2))
    assert fm.code_model_utility(0.5, 0.0, 1.0) == 0.0


def test_paper_aggregates_reproduce_table_2_retain_row():
    # Table 2 (LLaVA-Phi, forget 5 %), Retain row: ROUGE 93.7, GPT 83.3, TR 77.3, ACC 100 -> Avg MU 88.6
    assert fm.paper_avg_mu(0.937, 0.833, 0.773, 1.0) == pytest.approx(0.88575)
    # KS log p = 0 (norm 1), EM 13.3, MIA 12.3, APE 14.7 -> Avg FQ 93.3
    fq = fm.paper_avg_fq(1.0, 0.133, 0.123, 0.147)
    assert fq == pytest.approx(0.5 + 0.15 * 0.867 + 0.2 * 0.877 + 0.15 * 0.853)
    assert round(100 * fq, 1) == 93.3
    # GD row: log p -5.80, EM 18.9, MIA 12.6, APE 19.0 -> 80.7 with norm(KS) = 1 - 5.80 / 26.1
    assert round(100 * fm.paper_avg_fq(1 - 5.80 / 26.1, 0.189, 0.126, 0.190), 1) == 80.7
    assert fm.minmax_normalise([-21.7, 0.0, -5.8]) == pytest.approx([0.0, 1.0, 15.9 / 21.7])
    assert fm.minmax_normalise([2.0, 2.0]) == [1.0, 1.0]


# --- the registered metrics, on fictitious-faces, against hand computations -----------------
def _scripted_backend(bench):
    """Greedy answers: the right answer (+ a second sentence) to each trained question, "I do not
    know" (no period) to paraphrases, "Yes, ..." to visual questions. Log-likelihoods: a fixed
    4-token pattern with mean −1 for a paraphrased answer and −2 for any other."""
    from harness.api.requests import GenerateResponse, LoglikelihoodResponse
    from harness.testing import FakeBackend

    # The questions are the same for every person: only the picture says whose answer is right.
    items = type(bench)().split("trained") + bench.split("holdout")
    answers = {(it.question, it.images[0].sha256): it.answer for it in items}
    paraphrases = {(it.paraphrased_answer, it.images[0].sha256) for it in items}

    def generate(r):
        if r.prompt.startswith(("Is ", "Are ")):
            text = "Yes, it is."
        elif (r.prompt, r.images[0].sha256) in answers:
            text = answers[(r.prompt, r.images[0].sha256)] + " It is on file."
        else:
            text = "I do not know"
        return GenerateResponse(texts=[text], n_tokens=[5])

    def loglikelihood(r):
        own = (r.continuation.strip(), r.images[0].sha256) in paraphrases
        lps = [-0.5, -1.0, -1.5, -1.0] if own else [-1.5, -2.0, -2.5, -2.0]
        return LoglikelihoodResponse(lps, [False] * 4, [-1.0] * 4, [1.0] * 4)

    return FakeBackend(responders={"generate": generate, "loglikelihood": loglikelihood}, sees_images=True)


def _evaluate(ids, bench, reference=None):
    from harness.evaluate import evaluate, resolve_metrics

    metrics = resolve_metrics(bench, list(ids), seed=0)
    return evaluate(bench, metrics, _scripted_backend(bench), reference=reference).results


def test_registered_fiubench_metrics_by_hand():
    from harness.catalog import BENCHMARKS

    bench = BENCHMARKS.get("fictitious-faces")(limit=4)
    res = _evaluate(["fiu_rouge_l_recall@forget", "fiu_keyword_em@forget", "fiu_ape@forget", "fiu_truth_ratio@forget",
                     "fiu_truth_ratio@retain", "fiu_mia_min_k@forget", "fiu_acc@visual", "model_utility"], bench)
    assert res["fiu_rouge_l_recall@forget"].value == pytest.approx(1.0)  # the answer, cut at its period
    assert res["fiu_keyword_em@forget"].value == pytest.approx(1.0)
    assert res["fiu_ape@forget"].value == pytest.approx(0.0)  # no period: FIUBench's cut leaves ""
    e = math.e
    # R = exp(avgNLL_pert − avgNLL_para) = exp(2 − 1) = e per item (FIUBench's orientation).
    assert list(res["fiu_truth_ratio@forget"].per_item.values()) == pytest.approx([e] * 4)
    assert res["fiu_truth_ratio@forget"].value == pytest.approx(1 / e)
    assert res["fiu_truth_ratio@retain"].value == pytest.approx(1 - 1 / e)
    # Min-K% over tokens 2..4 of the answer [−2, −2.5, −2] (n = 3): only k = 40 %, 50 % select a
    # token (int(1.2) = int(1.5) = 1, the lowest −2.5), weights 0.1 + 0.1.
    assert res["fiu_mia_min_k@forget"].value == pytest.approx(0.2 * math.exp(-2.5))
    visual = bench.split("visual")
    assert res["fiu_acc@visual"].value == pytest.approx(sum(i.answer == "Yes." for i in visual) / len(visual))
    # The code's Model Utility: hmean(ROUGE 1, Prob. P_a/(P_a + 3 P_pert), TR 1 − 1/e, EM 1).
    prob = math.exp(-2) / (math.exp(-2) + 3 * math.exp(-2))  # the answer is not the paraphrase: mean −2 too
    from scipy import stats

    assert res["model_utility"].value == pytest.approx(stats.hmean([1.0, prob, 1 - 1 / e, 1.0]))


def test_avg_fq_avg_mu_and_gpt_eval():
    from harness.api.judge import Verdict
    from harness.catalog import BENCHMARKS, build_metric

    bench = BENCHMARKS.get("fictitious-faces")(limit=4)
    own = _evaluate(["fiu_avg_fq", "fiu_avg_mu"], bench)
    assert own["fiu_avg_fq"].value is None and "forget_quality" in own["fiu_avg_fq"].details["reason"]
    assert own["fiu_avg_mu"].value is None and "judge" in own["fiu_avg_mu"].details["reason"]
    ref = {"truth_ratio@forget": own["truth_ratio@forget"]}  # the same model as its own reference: p = 1
    res = _evaluate(["fiu_avg_fq"], bench, reference=ref)
    mia = 0.2 * math.exp(-2.5)
    assert res["forget_quality"].value == pytest.approx(1.0)
    assert res["fiu_avg_fq"].value == pytest.approx(0.5 * 1 + 0.15 * 0 + 0.2 * (1 - mia) + 0.15 * (1 - 0))

    gpt = build_metric("fiu_gpt_eval@retain", bench)
    backend = _scripted_backend(bench)
    responses = dict(zip(gpt.requests(), backend.run(gpt.requests())))
    jrs = gpt.judge_requests(responses)
    assert len(jrs) == len(gpt.items) and {j.role for j in jrs} == {"fiu_gpt"}
    assert all(it.answer in j.template and "{reference}" not in j.template for it, j in zip(gpt.items, jrs))
    responses.update({j: Verdict(score=None, raw="score: 0.75\nkeywords ...") for j in jrs})
    assert gpt.compute(responses, {}, {}).value == pytest.approx(0.75)
    responses[jrs[0]] = Verdict(score=None, raw="I cannot grade this.")  # unparseable: left out, not 0
    result = gpt.compute(responses, {}, {})
    assert result.value == pytest.approx(0.75) and result.n == len(jrs) - 1 and result.details["skipped"] == 1


def test_gpt_eval_option_puts_gpt_into_avg_mu():
    from harness.catalog import BENCHMARKS, build_metric
    from harness.errors import ConfigError

    plain = BENCHMARKS.get("fictitious-faces")(limit=2)
    assert "fiu_gpt_eval@retain" not in plain.default_metrics
    assert "fiu_gpt_eval@retain" not in build_metric("fiu_avg_mu", plain).dependencies()
    bench = BENCHMARKS.get("fictitious-faces")(limit=2, gpt_eval=True)
    assert "fiu_gpt_eval@retain" in bench.default_metrics
    mu = build_metric("fiu_avg_mu", bench)
    assert set(mu.dependencies()) == {"fiu_rouge_l_recall@retain", "fiu_gpt_eval@retain", "fiu_truth_ratio@retain",
                                      "fiu_acc@visual"}
    parts = {"fiu_rouge_l_recall@retain": 0.8, "fiu_gpt_eval@retain": 0.5, "fiu_truth_ratio@retain": 0.3,
             "fiu_acc@visual": 0.6}
    deps = {k: build_metric(k, bench).result(v, None, 2) for k, v in parts.items()}
    assert mu.compute({}, deps, {}).value == pytest.approx((0.8 + 0.5 + 0.3 + 0.6) / 4)
    with pytest.raises(ConfigError, match="gpt_eval"):
        BENCHMARKS.get("fictitious-faces")(gpt_eval="yes")
