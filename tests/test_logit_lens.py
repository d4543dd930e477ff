"""The `logit_lens` request kind served by the HF backend (docs/metrics.md §11): the last layer's
lens is the model's own next-token distribution, a middle layer's is softmax(W_head · norm(h))
computed by hand, for a causal LM and a tiny LLaVA; cached and routed like every kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.api.kinds import kind
from harness.api.requests import LogitLensRequest, request_key
from harness.backends.cached import CachedBackend
from harness.backends.hf import HFBackend
from harness.cache import ResponseCache
from harness.errors import HarnessError
from harness.testing import FakeBackend
from harness.zoo.specs import ModelSpec

PROMPT = "Question: What does Ada like?\nAnswer:"


def _rms_norm(h: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm written out: h / sqrt(mean(h²) + eps) · w (Llama's final norm)."""
    return h / torch.sqrt((h * h).mean() + eps) * weight


def _hand_probs(h: torch.Tensor, weight: torch.Tensor, eps: float, head: torch.Tensor) -> np.ndarray:
    return torch.softmax(head @ _rms_norm(h, weight, eps), -1).numpy().astype(np.float64)


@pytest.fixture(scope="module")
def text_backend(tiny_model_dir) -> HFBackend:
    backend = HFBackend(ModelSpec(name="toy", path=str(tiny_model_dir), chat_template="none", dtype="float32"), device="cpu")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # an untrained norm is all ones; make it matter (a second norm would show)
        norm = backend.model.model.norm.weight
        norm.copy_(0.5 + torch.rand(norm.shape, generator=gen) * 2)
    return backend


def _text_reference(backend: HFBackend, prompt: str):
    ids = backend.encode_prompt(LogitLensRequest(prompt))
    with torch.no_grad():
        out = backend.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out


def test_last_layer_is_the_models_own_distribution_and_a_middle_layer_the_hand_lens(text_backend):
    m = text_backend.model
    req = LogitLensRequest(PROMPT, layers=(1, 2), top_k=5, targets=(" tea",), target_ids=(7,))
    (resp,) = text_backend.run([req])
    out = _text_reference(text_backend, PROMPT)
    final = torch.softmax(out.logits[0, -1].float(), -1).numpy()
    order = np.argsort(-final)[:5]
    assert resp.top_ids[2] == order.tolist()
    np.testing.assert_allclose(resp.top_values[2], final[order], rtol=1e-5, atol=1e-7)

    hand = _hand_probs(out.hidden_states[1][0, -1], m.model.norm.weight.detach(), m.config.rms_norm_eps,
                       m.lm_head.weight.detach())
    order1 = np.argsort(-hand)[:5]
    assert resp.top_ids[1] == order1.tolist()
    np.testing.assert_allclose(resp.top_values[1], hand[order1], rtol=1e-5, atol=1e-7)

    tea = text_backend.tokenizer(" tea", add_special_tokens=False)["input_ids"][0]
    assert resp.target_ids == [7, tea]
    np.testing.assert_allclose(resp.target_values[1], [hand[7], hand[tea]], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(resp.target_values[2], [final[7], final[tea]], rtol=1e-5, atol=1e-7)
    # normed twice would differ: the check above is not vacuous
    twice = _hand_probs(out.hidden_states[2][0, -1], m.model.norm.weight.detach(), m.config.rms_norm_eps,
                        m.lm_head.weight.detach())
    assert np.abs(twice - final).max() > 1e-3


def test_probability_delta_and_second_difference_entries(text_backend):
    m = text_backend.model
    out = _text_reference(text_backend, PROMPT)
    w, eps, head = m.model.norm.weight.detach(), m.config.rms_norm_eps, m.lm_head.weight.detach()
    p0 = _hand_probs(out.hidden_states[0][0, -1], w, eps, head)
    p1 = _hand_probs(out.hidden_states[1][0, -1], w, eps, head)
    p2 = torch.softmax(out.logits[0, -1].float(), -1).numpy().astype(np.float64)
    pd, pd2 = text_backend.run([LogitLensRequest(PROMPT, layers=(0, 1, -1), order=1, top_k=3, target_ids=(5,),
                                                 bottom_k=2),
                                LogitLensRequest(PROMPT, layers=(0, 1, -1), order=2, top_k=3, target_ids=(5,))])
    assert set(pd.top_ids) == {1, -1} and set(pd2.top_ids) == {-1}  # keyed by the later layer
    assert pd2.bottom_ids == {} and pd2.bottom_values == {}  # bottom_k not asked for
    for key, diff in ((1, p1 - p0), (-1, p2 - p1)):
        assert pd.top_ids[key] == np.argsort(-diff)[:3].tolist()
        np.testing.assert_allclose(pd.target_values[key], [diff[5]], atol=1e-6)
        assert pd.bottom_ids[key] == np.argsort(diff)[:2].tolist()
        np.testing.assert_allclose(pd.bottom_values[key], np.sort(diff)[:2], atol=1e-6)
    second = p2 - 2 * p1 + p0
    assert pd2.top_ids[-1] == np.argsort(-second)[:3].tolist()
    np.testing.assert_allclose(pd2.top_values[-1], np.sort(second)[::-1][:3], atol=1e-6)


def test_vlm_lens_uses_the_language_models_norm_and_head(tiny_vlm_dir, tmp_path):
    from PIL import Image

    img = tmp_path / "cat.png"
    Image.fromarray(np.arange(48 * 48 * 3, dtype=np.uint8).reshape(48, 48, 3)).save(img)
    backend = HFBackend(ModelSpec(name="v", path=str(tiny_vlm_dir), kind="image-text-to-text", dtype="float32"), device="cpu")
    m = backend.model
    with torch.no_grad():  # a norm of ones hides a missing or doubled norm; make it matter
        lm_norm = m.model.language_model.norm.weight
        lm_norm.copy_(0.5 + torch.rand(lm_norm.shape, generator=torch.Generator().manual_seed(2)) * 2)
    req = LogitLensRequest("What colour is it?", layers=(1, -1), top_k=4, targets=("Red",), images=(str(img),))
    (resp,) = backend.run([req])
    ids, pixels = backend.encode_with_images(req)
    with torch.no_grad():
        out = m(input_ids=torch.tensor([ids]), pixel_values=pixels, output_hidden_states=True)
    final = torch.softmax(out.logits[0, -1].float(), -1).numpy()
    assert resp.top_ids[-1] == np.argsort(-final)[:4].tolist()
    np.testing.assert_allclose(resp.top_values[-1], np.sort(final)[::-1][:4], rtol=1e-5, atol=1e-7)
    lm = m.model.language_model
    hand = _hand_probs(out.hidden_states[1][0, -1], lm.norm.weight.detach(), m.config.text_config.rms_norm_eps,
                       m.lm_head.weight.detach())
    assert resp.top_ids[1] == np.argsort(-hand)[:4].tolist()
    np.testing.assert_allclose(resp.top_values[1], np.sort(hand)[::-1][:4], rtol=1e-5, atol=1e-7)
    red = resp.target_ids[0]
    np.testing.assert_allclose(resp.target_values[1], [hand[red]], rtol=1e-5, atol=1e-7)
    # the picture reaches the lens: another image, another distribution
    other = tmp_path / "dog.png"
    Image.fromarray(np.full((48, 48, 3), 200, dtype=np.uint8)).save(other)
    (resp2,) = backend.run([LogitLensRequest("What colour is it?", layers=(1, -1), top_k=4, targets=("Red",),
                                             images=(str(other),))])
    assert resp2.top_values[-1] != resp.top_values[-1]


def test_batched_equals_one_at_a_time_and_the_cache_answers_a_rerun(text_backend, tmp_path):
    reqs = [LogitLensRequest(PROMPT, layers=(1, 2), target_ids=(3,)),
            LogitLensRequest("Question: What does Bo like?\nAnswer: Bo likes", layers=(1, 2), target_ids=(3,))]
    alone = [text_backend.run([r])[0] for r in reqs]
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = CachedBackend(text_backend, cache).run(reqs)
    for a, b in zip(alone, first):
        assert a.top_ids == b.top_ids
        np.testing.assert_allclose(a.top_values[1], b.top_values[1], rtol=1e-4, atol=1e-6)
    again = CachedBackend(text_backend, cache)
    assert again.run(reqs) == first and again.stats.hits == 2  # decoded with int layer keys
    assert request_key(reqs[0]) != request_key(LogitLensRequest(PROMPT, layers=(1, 2), target_ids=(3,), order=1))
    assert "logit_lens" in text_backend.serves and kind("logit_lens").request is LogitLensRequest


def test_bad_requests_fail_in_one_line(text_backend):
    for req, msg in ((LogitLensRequest(PROMPT, layers=(9,)), "out of range"),
                     (LogitLensRequest(PROMPT, layers=(1,), order=1), "order 1"),
                     (LogitLensRequest(PROMPT, top_k=0), "top_k"),
                     (LogitLensRequest(PROMPT, bottom_k=-1), "bottom_k"),
                     (LogitLensRequest(PROMPT, target_ids=(10**6,)), "outside the vocabulary")):
        with pytest.raises(HarnessError, match=msg) as e:
            text_backend.run([req])
        assert "\n" not in str(e.value)


def test_fake_backend_serves_the_kind():
    fake = FakeBackend()
    (resp,) = fake.run([LogitLensRequest("q", layers=(3, 4), top_k=2, target_ids=(9,))])
    assert resp.top_ids == {3: [0, 1], 4: [0, 1]} and resp.target_ids == [9]


def test_lens_under_an_edit_intervention_is_keyed_apart_and_the_weights_come_back(text_backend, tmp_path):
    """UnLOK-VQA's loop in small: edit one MLP layer, read the lens, restore (docs/metrics.md §11)."""
    from contextlib import contextmanager

    from harness.api.intervention import Intervention
    from harness.backends.intervened import IntervenedBackend

    @contextmanager
    def edit(backend):
        w = backend.model.model.layers[0].mlp.down_proj.weight
        saved = w.detach().clone()
        with torch.no_grad():
            w.add_(torch.ones_like(w))
        try:
            yield
        finally:
            with torch.no_grad():
                w.copy_(saved)

    req = LogitLensRequest(PROMPT, layers=(1, 2), target_ids=(4,))
    cache = ResponseCache(tmp_path / "c.sqlite")
    plain = CachedBackend(text_backend, cache).run([req])[0]
    ev = Intervention.from_recipe("edit", {"layer": 0, "delta": "ones"}, enter=edit)
    edited = CachedBackend(IntervenedBackend(text_backend, ev), cache)
    got = edited.run([req])[0]
    assert edited.stats.misses == 1 and got.top_values[1] != plain.top_values[1]
    assert text_backend.run([req])[0].top_values == plain.top_values  # restored after the batch
    again = CachedBackend(IntervenedBackend(text_backend, ev), cache)
    assert again.run([req])[0] == got and again.stats.hits == 1
