"""Parity with lm-evaluation-harness: the same requests on the same model give the same numbers.

Both sides score one in-memory tiny Llama (the `tiny_model_dir` fixture, chat template off,
requests with chat=False, so both see raw text). For ~30 (context, continuation) pairs of
varied length built from fictitious-facts, our summed log-likelihood and greedy flag must
equal lm-eval's `HFLM.loglikelihood` within 1e-4.

Tokenisation conventions, and why they agree here:
- lm-eval encodes `context + continuation` whole and splits it at the context's length; we
  encode the two parts separately. With this byte-level BPE (GPT-2 regex pre-tokenizer) a
  continuation that starts with a space, after a context that does not end in one, is its
  own pre-token, so both give the same ids; `test_same_token_ids` checks that, so a numeric
  mismatch below is never a tokenisation difference in disguise.
- lm-eval moves trailing whitespace from the context to the continuation; our contexts
  ("...\\nAnswer:") have none.
- BOS: we add it (the tokenizer's post-processor) to every raw context. HFLM's default
  (`add_bos_token=None`) means "the tokenizer's default" in recent releases, but earlier
  0.4.x releases defaulted to `add_bos_token=False` (no special tokens for causal models),
  so it is set to True explicitly: both sides then score BOS + context + continuation.
"""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

from harness.benchmarks.fictitious_facts import FictitiousFacts  # noqa: E402
from harness.backends.hf import HFBackend  # noqa: E402
from harness.api.requests import LoglikelihoodRequest  # noqa: E402
from harness.zoo.load import load_hf_model  # noqa: E402
from harness.zoo.specs import ModelSpec  # noqa: E402

TOL = 1e-4


def _requests() -> list[LoglikelihoodRequest]:
    """30 pairs from fictitious-facts forget10: answer / paraphrase / a perturbed answer after
    the benchmark prompt, plus short contexts (the prompt's last line) and one-shot contexts
    (a solved question first), so lengths vary from ~35 to ~175 tokens (the model's limit is
    256, and nothing is truncated: lm-eval and we cut over-long inputs differently)."""
    bench = FictitiousFacts()
    items = bench.split("forget10")
    reqs = []
    for k, item in enumerate(items[:7]):
        ctx = bench.prompt(item)
        for cont in (item.answer, item.paraphrased_answer, item.perturbed_answers[k % 5]):
            reqs.append(LoglikelihoodRequest(context=ctx, continuation=bench.target(cont), chat=False))
    for item in items[30:35]:  # short: "Answer:" alone
        ctx = bench.prompt(item).rsplit("\n", 1)[-1]
        reqs.append(LoglikelihoodRequest(context=ctx, continuation=bench.target(item.answer), chat=False))
    for k in range(4):  # one-shot
        shot, item = items[50 + k], items[60 + k]
        ctx = bench.prompt(shot) + bench.target(shot.answer) + "\n\n" + bench.prompt(item)
        reqs.append(LoglikelihoodRequest(context=ctx, continuation=bench.target(item.answer), chat=False))
    return reqs


@pytest.fixture(scope="module")
def pair(tiny_model_dir):
    """(our backend, lm-eval's HFLM), sharing one in-memory model and tokenizer."""
    from lm_eval.models.huggingface import HFLM

    spec = ModelSpec(name="parity", path=str(tiny_model_dir), chat_template="none", dtype="float32")
    loaded = load_hf_model(spec, device="cpu")
    ours = HFBackend(spec, device="cpu", batch_size=8, loaded=loaded)
    theirs = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=8, add_bos_token=True)
    return ours, theirs


def _greedy_requests(ours: HFBackend, contexts: list[str], n: int = 3) -> list[LoglikelihoodRequest]:
    """Continuations the model itself would produce greedily (so the greedy flag is True on
    both sides, not trivially False everywhere): n argmax steps, decoded to text."""
    import torch

    reqs = []
    for ctx in contexts:
        ids = ours.tokenizer(ctx)["input_ids"]
        with torch.no_grad():
            for _ in range(n):
                ids = ids + [int(ours.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())]
        reqs.append(LoglikelihoodRequest(context=ctx, continuation=ours.tokenizer.decode(ids[-n:]), chat=False))
    return reqs


def _instances(requests):
    from lm_eval.api.instance import Instance

    return [
        Instance(request_type="loglikelihood", doc={"context": r.context}, arguments=(r.context, r.continuation),
                 idx=0, metadata=("parity", i, 1))
        for i, r in enumerate(requests)
    ]


def test_requests_vary_in_length(pair):
    ours, _ = pair
    lengths = [len(ours._encode_pair(r)[0]) for r in _requests()]
    assert len(lengths) == 30
    assert min(lengths) < 60 and max(lengths) > 150, lengths
    assert max(lengths) < ours._max_len()  # nothing truncated: truncation conventions differ


def test_same_token_ids(pair):
    """Both sides feed the model the same ids and score the same continuation tokens."""
    ours, theirs = pair
    for r in _requests() + _greedy_requests(ours, [_requests()[0].context]):
        seq, n_cont = ours._encode_pair(r)
        ctx_enc, cont_enc = theirs._encode_pair(r.context, r.continuation)
        assert ctx_enc[0] == ours.tokenizer.bos_token_id
        assert (seq, n_cont) == (ctx_enc + cont_enc, len(cont_enc)), r


def test_loglikelihood_matches_lm_eval(pair):
    ours, theirs = pair
    requests = _requests()
    requests += _greedy_requests(ours, [r.context for r in requests[::10]])
    mine = ours.loglikelihood(requests)
    ref = theirs.loglikelihood(_instances(requests), disable_tqdm=True)
    assert len(ref) == len(mine) == len(requests)
    errors = [abs(m.sum - ll) for m, (ll, _) in zip(mine, ref)]
    assert max(errors) < TOL, f"max |delta loglikelihood| {max(errors):.3g} (per request: {errors})"
    assert [m.greedy for m in mine] == [g for _, g in ref]
    # not vacuous: the sums are of real size and differ between requests
    assert len({round(m.sum, 3) for m in mine}) > 20 and all(m.sum < -1 for m in mine[:30])
    assert [m.greedy for m in mine[30:]] == [True] * 3


def test_batch_size_does_not_change_parity(pair):
    """lm-eval right-pads without a mask, we left-pad with one: batch size 1 on their side
    (no padding at all) gives the same numbers as our batched run."""
    from lm_eval.models.huggingface import HFLM

    ours, _ = pair
    requests = _requests()[::3]
    single = HFLM(pretrained=ours.model, tokenizer=ours.tokenizer, batch_size=1, add_bos_token=True)
    ref = single.loglikelihood(_instances(requests), disable_tqdm=True)
    mine = ours.loglikelihood(requests)
    assert max(abs(m.sum - ll) for m, (ll, _) in zip(mine, ref)) < TOL
