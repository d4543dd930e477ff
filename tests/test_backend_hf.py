"""HFBackend: batching and left padding change nothing, statistics match a manual computation."""

from __future__ import annotations

from dataclasses import replace

import math
import shutil

import pytest
import torch

from harness.backends.hf import HFBackend
from harness.errors import HarnessError
from harness.api.requests import (
    GenerateRequest,
    GenerateResponse,
    HiddenStatesRequest,
    HiddenStatesResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from harness.testing import FakeBackend
from harness.zoo.specs import ModelSpec

CONTEXTS = [
    "Question: What does Ada like?\nAnswer:",
    "Q",
    "Question: What does Gus like? Tell me everything you know about Gus and old clocks and green glass.\nAnswer:",
    "Question: What does Bo like?",
]
CONTINUATIONS = [" Ada likes tea.", " maps", " Gus likes old clocks and green glass and rivers.", "\nAnswer: Bo likes maps."]


def _spec(path) -> ModelSpec:
    return ModelSpec(name="t", path=str(path), chat_template="auto", dtype="float32")


@pytest.fixture(scope="module")
def lively_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with weights redrawn at std 0.2: an untrained model at the default init
    repeats one token whatever the prompt, which would hide padding bugs in generation."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("lively")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.save_pretrained(out)
    for f in tiny_model_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, out)
    return out


@pytest.fixture(scope="module")
def backend(lively_dir) -> HFBackend:
    return HFBackend(_spec(lively_dir), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def single(lively_dir) -> HFBackend:
    return HFBackend(_spec(lively_dir), device="cpu", batch_size=1)


def _ll_requests(chat: bool = False) -> list[LoglikelihoodRequest]:
    return [LoglikelihoodRequest(context=c, continuation=x, chat=chat, moments=True) for c, x in zip(CONTEXTS, CONTINUATIONS)]


def _manual(backend: HFBackend, context: str, continuation: str):
    """One unpadded forward pass: (logprobs, mu, sigma) of the continuation tokens."""
    tok, model = backend.tokenizer, backend.model
    ctx = tok(context)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ctx + cont])).logits[0].double()  # textbook formulas, float64
    logp = logits[len(ctx) - 1: len(ctx) + len(cont) - 1].log_softmax(-1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    var = (p * logp**2).sum(-1) - mu**2
    return logp[torch.arange(len(cont)), torch.tensor(cont)], mu, var.clamp(min=1e-6).sqrt()


def _close(a, b, tol=1e-5):
    assert len(a) == len(b)
    assert all(abs(x - y) <= tol for x, y in zip(a, b)), (a, b)


def test_lazy_load(tiny_model_dir):
    b = HFBackend(_spec(tiny_model_dir), device="cpu")
    assert b._loaded is None
    assert b.identity.startswith("sha256:")
    assert b.encode_prompt(LoglikelihoodRequest(context="Q", continuation="A"))  # tokenizer only
    assert b._loaded is None and b.calls == 0
    b.loglikelihood([LoglikelihoodRequest(context="Q", continuation=" A")])
    assert b._loaded is not None and b.calls == 1
    # An in-memory model (e.g. just trained) is served as given.
    mem = HFBackend(_spec(tiny_model_dir), loaded=b.loaded, identity="in-memory")
    assert mem.model is b.model and mem.identity == "in-memory"
    req = LoglikelihoodRequest(context="Q", continuation=" A")
    assert mem.loglikelihood([req]) == b.loglikelihood([req])


def test_moments_only_when_asked(backend):
    """Without `moments` the vocabulary mean/spread are not computed; log-probs and greedy flags are the same."""
    reqs = _ll_requests()
    plain = backend.loglikelihood([replace(r, moments=False) for r in reqs])
    full = backend.loglikelihood(reqs)
    for a, b in zip(plain, full):
        assert a.token_mu == a.token_sigma == [] and len(b.token_mu) == b.n_tokens > 0
        assert a.token_logprobs == b.token_logprobs and a.token_greedy == b.token_greedy


def test_loglikelihood_batched_equals_unbatched_and_manual(backend, single):
    reqs = _ll_requests()
    batched, one = backend.loglikelihood(reqs), single.loglikelihood(reqs)
    for req, a, b in zip(reqs, batched, one):
        lp, mu, sigma = _manual(backend, req.context, req.continuation)
        assert a.n_tokens == len(lp) > 0
        _close(a.token_logprobs, b.token_logprobs)
        _close(a.token_logprobs, lp.tolist())
        _close(a.token_mu, mu.tolist())
        _close(a.token_sigma, sigma.tolist())
        _close(a.token_mu, b.token_mu)
        _close(a.token_sigma, b.token_sigma)
        assert a.token_greedy == b.token_greedy
        assert all(s > 0 for s in a.token_sigma) and all(m < 0 for m in a.token_mu)


def test_greedy_generation_batched_equals_one_at_a_time(backend, single):
    reqs = [GenerateRequest(prompt=c, max_new_tokens=n, chat=False) for c, n in zip(CONTEXTS, [12, 5, 9, 12])]
    batched, one = backend.generate(reqs), single.generate(reqs)
    assert [r.texts for r in batched] == [r.texts for r in one]
    assert [r.n_tokens for r in batched] == [r.n_tokens for r in one]
    assert all(0 < r.n_tokens[0] <= q.max_new_tokens for r, q in zip(batched, reqs))
    assert len({r.texts[0] for r in batched}) == len(reqs)  # prompt-dependent, so padding bugs would show
    # A request's answer does not depend on its batch-mates.
    assert single.generate([reqs[2]])[0].texts == batched[2].texts


def test_stop_strings_cut_the_text(backend):
    req = GenerateRequest(prompt=CONTEXTS[0], max_new_tokens=16, chat=False)
    full = backend.generate([req])[0].texts[0]
    assert len(set(full)) > 4  # a varied completion, not one token repeated
    stop = next(full[i:i + 2] for i in range(3, len(full)) if full.find(full[i:i + 2]) == i)
    cut = backend.generate([GenerateRequest(prompt=CONTEXTS[0], max_new_tokens=16, chat=False, stop=(stop, "\x00never"))])[0]
    assert cut.texts[0] == full[: full.find(stop)]
    assert stop not in cut.texts[0]
    assert 0 < cut.n_tokens[0] < backend.generate([req])[0].n_tokens[0]


def test_sampling_depends_only_on_request_and_seed(backend):
    a = GenerateRequest(prompt=CONTEXTS[0], max_new_tokens=12, temperature=1.0, n=3, seed=7, chat=False)
    alone = backend.generate([a])[0]
    mixed = backend.generate([GenerateRequest(prompt=CONTEXTS[1], temperature=0.7, seed=1, max_new_tokens=5, chat=False), a,
                              GenerateRequest(prompt=CONTEXTS[2], max_new_tokens=4, chat=False)])[1]
    assert len(alone.texts) == 3 == len(alone.n_tokens)
    assert alone.texts == mixed.texts
    other = backend.generate([GenerateRequest(prompt=CONTEXTS[0], max_new_tokens=12, temperature=1.0, n=3, seed=8, chat=False)])[0]
    assert other.texts != alone.texts


def test_hidden_states_batched_equals_unbatched(backend, single):
    for pooling in ("mean", "last", "per_token"):
        reqs = [HiddenStatesRequest(context=c, continuation=x, layers=(0, 1, -1), pooling=pooling, chat=False)
                for c, x in zip(CONTEXTS, CONTINUATIONS)]
        batched, one = backend.hidden_states(reqs), single.hidden_states(reqs)
        for a, b in zip(batched, one):
            assert set(a.states) == {0, 1, -1}
            for layer in a.states:
                x, y = torch.tensor(a.states[layer]), torch.tensor(b.states[layer])
                assert x.shape == y.shape
                assert torch.allclose(x, y, atol=1e-5), (pooling, layer)
    per_token = backend.hidden_states([HiddenStatesRequest(context=CONTEXTS[0], continuation=CONTINUATIONS[0], layers=(-1,), pooling=p, chat=False)
                                       for p in ("per_token", "mean", "last")])
    matrix = torch.tensor(per_token[0].states[-1])
    n_cont = len(backend.tokenizer(CONTINUATIONS[0], add_special_tokens=False)["input_ids"])
    assert matrix.shape == (n_cont, 64)
    assert torch.allclose(matrix.mean(0), torch.tensor(per_token[1].states[-1]), atol=1e-5)
    assert torch.allclose(matrix[-1], torch.tensor(per_token[2].states[-1]), atol=1e-5)


def test_chat_template_applied(tiny_chat_model_dir):
    b = HFBackend(_spec(tiny_chat_model_dir), device="cpu")
    tok = b.tokenizer
    chat = LoglikelihoodRequest(context="What does Ada like?", continuation=" tea", system="Be brief.")
    raw = LoglikelihoodRequest(context="What does Ada like?", continuation=" tea", system="Be brief.", chat=False)
    ids = b.encode_prompt(chat)
    text = tok.decode(ids)
    assert "<|user|> What does Ada like?" in text and "<|system|> Be brief." in text and text.endswith("<|assistant|>")
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id  # BOS once, not twice
    assert tok.decode(b.encode_prompt(raw)) == tok.bos_token + "Be brief.\n\nWhat does Ada like?"
    a, r = b.loglikelihood([chat, raw])
    assert a.token_logprobs != r.token_logprobs
    assert b.chat_template_hash and len(b.chat_template_hash) == 64
    off = HFBackend(ModelSpec(name="t", path=str(tiny_chat_model_dir), chat_template="none"), device="cpu")
    assert off.chat_template_hash is None
    assert off.encode_prompt(chat) == b.encode_prompt(raw)


def test_instruct_name_without_template_warns(tiny_model_dir, caplog):
    b = HFBackend(ModelSpec(name="tiny-Instruct-warn", path=str(tiny_model_dir)), device="cpu")
    with caplog.at_level("WARNING"):
        b.encode_prompt(GenerateRequest(prompt="hi"))
    assert any("chat model" in rec.message for rec in caplog.records)


def test_lora_adapter_changes_logprobs(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(tmp_path / "adapter")
    tuned = HFBackend(_spec(tiny_model_dir), device="cpu", adapter=str(tmp_path / "adapter"))
    backend = HFBackend(_spec(tiny_model_dir), device="cpu")
    assert tuned.identity != backend.identity and "+adapter:" in tuned.identity
    reqs = _ll_requests()
    for a, b in zip(tuned.loglikelihood(reqs), backend.loglikelihood(reqs)):
        assert max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs)) > 1e-4
    fa, fb = tuned.logits_fingerprint(["Q", "Answer:"]), backend.logits_fingerprint(["Q", "Answer:"])
    assert fa.shape == fb.shape == (2, len(backend.tokenizer))
    assert not torch.allclose(fa, fb)


def test_auto_batch_size_halves_on_oom(lively_dir, backend):
    # the plain path (the shared-context one forwards through the model directly: tests/test_shared_context.py)
    b = HFBackend(_spec(lively_dir), device="cpu", batch_size="auto", max_batch_size=8, shared_context=False)
    forward = b._forward

    def tight(seqs, *args, **kwargs):
        if len(seqs) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(seqs, *args, **kwargs)

    b._forward = tight
    reqs = _ll_requests() * 2
    got = b.loglikelihood(reqs)
    assert b._auto_size["loglikelihood"] == 2 and b.calls == len(reqs)
    for a, e in zip(got, backend.loglikelihood(reqs)):
        _close(a.token_logprobs, e.token_logprobs)


def test_run_dispatches_mixed_kinds_in_order(backend):
    reqs = [
        LoglikelihoodRequest(context=CONTEXTS[0], continuation=CONTINUATIONS[0], chat=False),
        GenerateRequest(prompt=CONTEXTS[1], max_new_tokens=4, chat=False),
        HiddenStatesRequest(context=CONTEXTS[2], continuation=CONTINUATIONS[2], chat=False),
        LoglikelihoodRequest(context=CONTEXTS[3], continuation=CONTINUATIONS[3], chat=False),
    ]
    before = backend.calls
    out = backend.run(reqs)
    assert [type(r) for r in out] == [LoglikelihoodResponse, GenerateResponse, HiddenStatesResponse, LoglikelihoodResponse]
    assert backend.calls - before == 4
    _close(out[3].token_logprobs, backend.loglikelihood([reqs[3]])[0].token_logprobs)
    assert out[1].texts == backend.generate([reqs[1]])[0].texts
    assert math.isclose(out[0].sum, backend.loglikelihood([reqs[0]])[0].sum, abs_tol=1e-5)


def test_run_rejects_unserved_kind():
    b = FakeBackend("x", serves={"loglikelihood"})
    assert len(b.run([LoglikelihoodRequest(context="a", continuation="b")])) == 1
    with pytest.raises(HarnessError, match="generate"):
        b.run([LoglikelihoodRequest(context="a", continuation="b"), GenerateRequest(prompt="a")])
    assert b.calls == 1  # the mixed list was refused before any of it was answered
