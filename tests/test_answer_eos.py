"""open-unlearning's answer encoding (`answer_eos`): EOS after every answer, trained and scored.

The reference here is open-unlearning's rule written out by hand (its `preprocess_chat_instance`
in `src/data/utils.py`, as quoted in docs/metrics.md "Answer EOS"):

    chat_ids = prompt_ids + answer_ids
    if chat_ids[-1] != eos: chat_ids += [eos]
    labels = [-100] * len(prompt_ids) + chat_ids[len(prompt_ids):]

and its scores are computed here from the model's logits on those ids: probability =
exp(−mean NLL over the labelled positions), truth ratio = exp(mean_k mean log p_k − mean log
p_para); its MIA statistics leave the final (EOS) position out.
"""

from __future__ import annotations

import math

import pytest
import torch

from harness.api.benchmark import Benchmark, BenchmarkData, QAItem
from harness.api.metric import answer_request
from harness.api.requests import LoglikelihoodRequest, request_key
from harness.api.training import encode_item
from harness.backends.hf import HFBackend
from harness.errors import ConfigError
from harness.metrics.mia import MIALoss, MIAMinK, MIAMinKPlusPlus, MIAZlib
from harness.metrics.normalised_probability import NormalisedProbability
from harness.metrics.probability import Probability
from harness.metrics.truth_ratio import TruthRatio
from harness.prompts import encode_answer
from harness.zoo.specs import ModelSpec

FORGET = [
    QAItem("f0", "What does Ada like?", "Ada likes tea.", paraphrased_answer="tea, Ada likes",
           perturbed_answers=("Ada likes maps.", "Ada likes rivers.")),
    QAItem("f1", "What does Bo like?", "Bo likes old clocks.", perturbed_answers=("Bo likes green glass.",)),
]
HOLDOUT = [
    QAItem("h0", "What does Cyr like?", "Cyr likes rivers.", perturbed_answers=("Cyr likes tea.",)),
    QAItem("h1", "What does Dee like?", "Dee likes maps.", perturbed_answers=("Dee likes old clocks.",)),
]


class EosBench(Benchmark):
    name = "eos-bench"
    default_answer_eos = True

    def load(self) -> BenchmarkData:
        return BenchmarkData(splits={"forget10": FORGET, "retain90": HOLDOUT, "holdout10": HOLDOUT}, source="test")


@pytest.fixture(scope="module")
def backend(tiny_model_dir) -> HFBackend:
    return HFBackend(ModelSpec(name="t", path=str(tiny_model_dir)), device="cpu", batch_size=4)


def ou_encode(tok, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """open-unlearning's encoding, by hand: prompt ids, answer ids, then EOS unless already last."""
    prompt_ids = tok(prompt)["input_ids"]
    chat_ids = prompt_ids + tok(answer, add_special_tokens=False)["input_ids"]
    if chat_ids[-1] != tok.eos_token_id:
        chat_ids = chat_ids + [tok.eos_token_id]
    labels = [-100] * len(prompt_ids) + chat_ids[len(prompt_ids):]
    return chat_ids, labels


def ou_token_logprobs(model, ids: list[int], labels: list[int]) -> list[float]:
    """Log p of every labelled token (one-position shift), from one plain forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = logits[:-1].log_softmax(-1)
    target = torch.tensor(labels[1:])
    keep = target != -100
    return logp[keep].gather(-1, target[keep][:, None]).squeeze(-1).tolist()


def ou_probability(backend, bench, item, answer: str) -> float:
    ids, labels = ou_encode(backend.tokenizer, bench.prompt(item), bench.target(answer))
    lps = ou_token_logprobs(backend.model, ids, labels)
    return math.exp(sum(lps) / len(lps))


def evaluate(backend, metric) -> dict:
    reqs = list(dict.fromkeys(metric.requests()))
    return dict(zip(reqs, backend.loglikelihood(reqs)))


def test_encode_answer_is_open_unlearnings_rule(backend):
    tok = backend.tokenizer
    eos = tok.eos_token_id
    body = tok(" Ada likes tea.", add_special_tokens=False)["input_ids"]
    assert encode_answer(tok, " Ada likes tea.", True) == body + [eos]
    assert encode_answer(tok, " Ada likes tea.", False) == body
    # An answer already ending in EOS is not given a second one.
    assert encode_answer(tok, " Ada likes tea." + tok.eos_token, True) == body + [eos]
    assert encode_answer(tok, "", True) == []  # nothing to score stays nothing


@pytest.mark.parametrize("chat", [False])
def test_training_ids_are_open_unlearnings(backend, chat):
    bench, tok = EosBench(), backend.tokenizer
    for item in FORGET:
        ids, labels = ou_encode(tok, bench.prompt(item), bench.target(item.answer))
        enc = encode_item(bench, item, tok, 256, chat=chat)
        assert enc["input_ids"] == ids and enc["labels"] == labels
    off = EosBench(answer_eos=False)
    enc = encode_item(off, FORGET[0], tok, 256)
    assert enc["input_ids"][-1] != tok.eos_token_id  # the switch governs training too


def test_scored_ids_match_training_ids(backend):
    """The backend scores exactly the answer ids a method trains on (EOS included)."""
    bench, tok = EosBench(), backend.tokenizer
    item = FORGET[0]
    seq, n_cont = backend._encode_pair(answer_request(bench, item))
    ids, labels = ou_encode(tok, bench.prompt(item), bench.target(item.answer))
    assert seq == ids and n_cont == sum(1 for t in labels if t != -100)


def test_probability_and_truth_ratio_per_item_match_open_unlearning(backend):
    bench = EosBench()
    prob = Probability(bench, "forget")
    got = prob.compute(evaluate(backend, prob), {}, {}).per_item
    for item in FORGET:
        assert got[item.id] == pytest.approx(ou_probability(backend, bench, item, item.answer), rel=1e-5, abs=1e-7)

    tr = TruthRatio(bench, "forget")
    got = tr.compute(evaluate(backend, tr), {}, {}).per_item
    for item in FORGET:
        para = item.paraphrased_answer or item.answer
        log_para = math.log(ou_probability(backend, bench, item, para))
        log_pert = sum(math.log(ou_probability(backend, bench, item, p)) for p in item.perturbed_answers)
        assert got[item.id] == pytest.approx(math.exp(log_pert / len(item.perturbed_answers) - log_para), rel=1e-5)

    npb = NormalisedProbability(bench, "forget")
    got = npb.compute(evaluate(backend, npb), {}, {}).per_item
    for item in FORGET:
        p = ou_probability(backend, bench, item, item.answer)
        pert = [ou_probability(backend, bench, item, a) for a in item.perturbed_answers]
        assert got[item.id] == pytest.approx(p / (p + sum(pert)), rel=1e-5)


def test_eos_changes_probability_but_not_mia(backend):
    """Probability moves with the switch; every MIA score is the same (the EOS position dropped)."""
    on, off = EosBench(), EosBench(answer_eos=False)
    p_on = Probability(on, "forget").compute(evaluate(backend, Probability(on, "forget")), {}, {}).per_item
    p_off = Probability(off, "forget").compute(evaluate(backend, Probability(off, "forget")), {}, {}).per_item
    assert all(abs(p_on[k] - p_off[k]) > 1e-6 for k in p_on)
    for cls in (MIALoss, MIAZlib, MIAMinK, MIAMinKPlusPlus):
        a, b = cls(on), cls(off)
        ra, rb = a.compute(evaluate(backend, a), {}, {}), b.compute(evaluate(backend, b), {}, {})
        assert ra.per_item == pytest.approx(rb.per_item, rel=1e-5), cls.name
        assert ra.value == pytest.approx(rb.value)


def test_mia_min_k_drops_exactly_the_eos_position(backend):
    """By hand: open-unlearning's Min-k% on the EOS-encoded ids, final position left out."""
    bench, tok = EosBench(), backend.tokenizer
    metric = MIAMinK(bench, k=0.4)
    got = metric.compute(evaluate(backend, metric), {}, {}).per_item
    for item in FORGET + HOLDOUT:
        ids, labels = ou_encode(tok, bench.prompt(item), bench.target(item.answer))
        lps = sorted(ou_token_logprobs(backend.model, ids, labels)[:-1])
        m = max(1, int(len(lps) * 0.4))
        assert got[item.id] == pytest.approx(-sum(lps[:m]) / m, rel=1e-5)


def test_switch_off_keeps_cache_keys_and_is_validated():
    req = LoglikelihoodRequest(context="q", continuation=" a")
    # Answers cached before the switch existed keep their keys.
    assert request_key(req) == request_key(LoglikelihoodRequest(context="q", continuation=" a", answer_eos=False))
    assert request_key(req) != request_key(LoglikelihoodRequest(context="q", continuation=" a", answer_eos=True))
    assert answer_request(EosBench(), FORGET[0]).answer_eos is True
    assert answer_request(EosBench(answer_eos=False), FORGET[0]).answer_eos is False
    with pytest.raises(ConfigError, match="answer_eos must be true or false"):
        EosBench(answer_eos="yes")  # refused when built, so `harness validate` reports it


def test_defaults_per_benchmark():
    from harness.catalog import BENCHMARKS

    on = {"tofu", "fictitious-facts", "muse"}
    off = {"fiubench", "fictitious-faces", "wmdp"}
    for name in on | off:
        assert BENCHMARKS.get(name).default_answer_eos is (name in on), name
        assert "answer_eos" in BENCHMARKS.get(name).known_options()


def test_provenance_records_the_switch():
    from types import SimpleNamespace

    from harness.assemble import assemble_summary

    def summary(bench):
        return assemble_summary(
            model="m", method="none", benchmark_name=bench.name, benchmark=bench, results={}, config_hash="h", seed=0,
            device="cpu", backend=SimpleNamespace(identity="id", chat_template_hash=None), spec=SimpleNamespace(name="m"),
            eval_path="p", artifact=None, reference=None, judges=None, cache=(0, 0), timing={})

    assert summary(EosBench()).provenance.answer_eos is True
    assert summary(EosBench(answer_eos=False)).provenance.answer_eos is False
