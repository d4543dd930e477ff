"""Shared-context log-likelihood scoring (harness/backends/shared_context.py) against the plain
path on the same requests: values within 1e-5, identical greedy flags, each context forwarded once."""

from __future__ import annotations

import pytest

from harness.api.requests import LoglikelihoodRequest
from harness.backends.hf import HFBackend
from harness.backends.shared_context import group_by_context, shared_context_default
from harness.errors import ConfigError
from harness.zoo.specs import ModelSpec


def _requests() -> list[LoglikelihoodRequest]:
    """TOFU-style groups (one question, an answer and its perturbations), contexts of different
    lengths, a few-shot context with a long shared prefix, a lone context and an empty continuation."""
    shots = " ".join(f"Q: fact {k}? A: value {k}." for k in range(8))
    reqs = []
    for q, answers in [("Where was Ada born?", [" Paris.", " In the city of Rome, long ago.", " Oslo", " Lima."]),
                       ("Who wrote the report on the harbour?", [" Ben.", " Cara Lind.", " nobody at all"]),
                       (shots + " Q: fact 9? A:", [" value 9.", " value 8.", " value nine, surely."])]:
        reqs += [LoglikelihoodRequest(q, a, moments=k % 2 == 0) for k, a in enumerate(answers)]
    reqs.append(LoglikelihoodRequest("A question asked once?", " Yes."))
    reqs.append(LoglikelihoodRequest("Where was Ada born?", ""))
    reqs.append(LoglikelihoodRequest("Chatty?", " Yes.", chat=True, system="Be brief."))
    reqs.append(LoglikelihoodRequest("Chatty?", " No.", chat=True, system="Be brief."))
    return reqs


def _spec(path) -> ModelSpec:
    return ModelSpec(name="t", path=str(path), dtype="float32")


def test_shared_context_equals_the_plain_path(tiny_chat_model_dir):
    reqs = _requests()
    shared = HFBackend(_spec(tiny_chat_model_dir), device="cpu", batch_size=3, shared_context=True)
    plain = HFBackend(_spec(tiny_chat_model_dir), device="cpu", batch_size=3, shared_context=False)
    forwarded = {"shared": 0, "plain": 0}

    def count(name):
        def hook(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            forwarded[name] += int(ids.numel())
        return hook

    shared.loglikelihood(reqs[:4])  # the once-per-backend check that packing agrees here
    assert shared._packing_ok is True
    for name, b in (("shared", shared), ("plain", plain)):
        b.model.get_input_embeddings()  # loads the weights
        b.model.register_forward_pre_hook(count(name), with_kwargs=True)
    got, want = shared.loglikelihood(reqs), plain.loglikelihood(reqs)
    assert len(got) == len(want) == len(reqs)
    for g, w in zip(got, want):
        assert len(g.token_logprobs) == len(w.token_logprobs)
        assert all(abs(a - b) < 1e-5 for a, b in zip(g.token_logprobs, w.token_logprobs))
        assert g.token_greedy == w.token_greedy
        assert len(g.token_mu) == len(w.token_mu)
        assert all(abs(a - b) < 1e-4 for a, b in zip(g.token_mu + g.token_sigma, w.token_mu + w.token_sigma))
    assert got[-3].token_logprobs == []  # the empty continuation
    # token positions forwarded, padding included: the contexts went through once per group
    assert forwarded["shared"] < 0.85 * forwarded["plain"]


def test_grouping_rules():
    ctx = [1, 2, 3, 4, 5, 6]
    pairs = [(ctx + [9], 1), (ctx + [8, 8], 2), ([1, 2, 3], 0), ([5, 9], 1), (ctx + [7], 1), ([4], 1)]
    assert group_by_context(pairs, lambda i: True) == [[0, 1, 4]]  # [5] alone; an empty context never groups
    assert group_by_context(pairs, lambda i: i != 4) == [[0, 1]]  # saves 6 context tokens for 3 continuation ones
    # a short context with long continuations: the saved context tokens (1 x 2) are fewer than
    # the continuation tokens (8), so the one-pass path scores them
    assert group_by_context([([1, 2, 5, 6, 7, 8], 4), ([1, 2, 9, 9, 9, 9], 4)], lambda i: True) == []
    # saving more than the continuation tokens but less than MIN_SAVING (2) times them: one pass
    assert group_by_context([([1, 2, 3, 4, 5, 8, 8, 8], 3), ([1, 2, 3, 4, 5, 9, 9, 9], 3)], lambda i: True) == []


def test_switch(monkeypatch):
    monkeypatch.setenv("HARNESS_SHARED_CONTEXT", "0")
    assert not shared_context_default()
    monkeypatch.setenv("HARNESS_SHARED_CONTEXT", "maybe")
    with pytest.raises(ConfigError, match="HARNESS_SHARED_CONTEXT"):
        shared_context_default()
    monkeypatch.delenv("HARNESS_SHARED_CONTEXT")
    assert shared_context_default()


@pytest.mark.parametrize("path", ["packed", "kv-cache"])
def test_out_of_memory_halves_the_shared_batch_too(path, tiny_chat_model_dir, monkeypatch):
    import torch

    from harness.backends import shared_context

    reqs = _requests()
    b = HFBackend(_spec(tiny_chat_model_dir), device="cpu", batch_size="auto", max_batch_size=4, shared_context=True)
    b._packing_ok = path == "packed"  # kv-cache: as on a model that ignores a custom 4D mask
    name = "packed_logits" if path == "packed" else "continuation_logits"
    real = getattr(shared_context, name)
    seen = []

    def tight(model, pad_or_id, arg, contexts, *args):
        seen.append(len(contexts))
        if len(contexts) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, pad_or_id, arg, contexts, *args)

    monkeypatch.setattr(f"harness.backends.hf_loglikelihood.{name}", tight)
    got = b.loglikelihood(reqs)
    monkeypatch.undo()
    assert b._auto_size[f"loglikelihood_{'packed' if path == 'packed' else 'shared'}"] == 1 and seen[0] > 1
    assert b.calls == len(reqs)  # calls count requests, whichever path answered them
    want = HFBackend(_spec(tiny_chat_model_dir), device="cpu", shared_context=False).loglikelihood(reqs)
    assert all(abs(x - y) < 1e-5 for g, w in zip(got, want) for x, y in zip(g.token_logprobs, w.token_logprobs))


def test_a_model_that_ignores_the_packed_mask_falls_back(tiny_chat_model_dir, monkeypatch):
    """The once-per-backend check: packed values that disagree with the plain path switch packing
    off for that backend (one warning), and the answers still equal the plain path's."""
    from harness.backends import shared_context

    real = shared_context.packed_logits

    def wrong(*args, **kwargs):  # as a model that ignores the mask would: other logits
        logits, rows = real(*args, **kwargs)
        return logits * 2.0, rows

    monkeypatch.setattr("harness.backends.hf_loglikelihood.packed_logits", wrong)
    reqs = _requests()
    b = HFBackend(_spec(tiny_chat_model_dir), device="cpu", batch_size=3, shared_context=True)
    got = b.loglikelihood(reqs)
    assert b._packing_ok is False
    want = HFBackend(_spec(tiny_chat_model_dir), device="cpu", shared_context=False).loglikelihood(reqs)
    assert all(abs(x - y) < 1e-5 for g, w in zip(got, want) for x, y in zip(g.token_logprobs, w.token_logprobs))
