"""The HF backend serving an image-text-to-text model (a tiny LLaVA): images reach the model,
enter the cache key by content, batch like text, and are encoded as the tiny VLM is trained."""

from __future__ import annotations

import pytest

from harness.api.requests import GenerateRequest, HiddenStatesRequest, LoglikelihoodRequest, request_key
from harness.backends.cached import CachedBackend
from harness.backends.hf import HFBackend
from harness.cache import ResponseCache
from harness.zoo import tiny_vlm as tv
from harness.zoo.specs import ModelSpec

QUESTION = "Who is it?"


@pytest.fixture(scope="module")
def vlm_dir(tiny_vlm_dir):
    return tiny_vlm_dir


@pytest.fixture(scope="module")
def images(face_images):
    return face_images


def _spec(path) -> ModelSpec:
    return ModelSpec(name="v", path=str(path), kind="image-text-to-text", dtype="float32")


@pytest.fixture(scope="module")
def backend(vlm_dir) -> HFBackend:
    return HFBackend(_spec(vlm_dir), device="cpu", batch_size=8)


def _close(a, b, tol=1e-4):
    assert len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b)), (a, b)


def test_only_image_text_to_text_models_see_images(vlm_dir):
    assert HFBackend(_spec(vlm_dir)).sees_images
    assert not HFBackend(ModelSpec(name="t", path=str(vlm_dir))).sees_images  # kind causal-lm


def test_two_images_give_two_loglikelihoods_and_two_cache_keys(vlm_dir, images, tmp_path):
    cached = CachedBackend(HFBackend(_spec(vlm_dir), device="cpu"), ResponseCache(tmp_path / "c.sqlite"))
    ra = LoglikelihoodRequest(QUESTION, " Ada Lee.", images=(images[0],))
    rb = LoglikelihoodRequest(QUESTION, " Ada Lee.", images=(images[1],))
    a, b = cached.run([ra, rb])
    assert request_key(ra) != request_key(rb)
    assert len(a.token_logprobs) == len(b.token_logprobs) > 0
    assert abs(sum(a.token_logprobs) - sum(b.token_logprobs)) > 1e-4
    again = CachedBackend(HFBackend(_spec(vlm_dir), device="cpu"), ResponseCache(tmp_path / "c.sqlite"))
    assert again.run([ra, rb]) == [a, b] and again.backend._loaded is None  # served from the cache


def test_loglikelihood_batched_equals_manual(backend, images):
    """Batched (left-padded, mixed with a text-only row) = one unpadded pass through the processor."""
    from PIL import Image

    answers = [" Ada Lee.", " Red.", " Ada Lee likes red hats."]
    reqs = [LoglikelihoodRequest(QUESTION, x, images=(im,), moments=True) for x, im in zip(answers, images)]
    reqs.append(LoglikelihoodRequest(QUESTION, " Red.", moments=True))  # no image: plain text on the same model
    out = backend.loglikelihood(reqs)
    model, processor = backend.model, backend.processor
    for r, x, im in zip(out, answers, images):
        manual = tv.answer_logprobs(model, processor, Image.open(im).convert("RGB"), QUESTION, [x.strip()])[0]
        _close(r.token_logprobs, manual)
    single = HFBackend(_spec(backend.path), device="cpu", batch_size=1)
    for r, one in zip(out, single.loglikelihood(reqs)):
        _close(r.token_logprobs, one.token_logprobs)
        _close(r.token_mu, one.token_mu)


def test_greedy_generation_batched_equals_one_at_a_time(backend, images):
    reqs = [GenerateRequest(QUESTION, max_new_tokens=6, images=(im,)) for im in images]
    reqs.append(GenerateRequest("What colour is it?", max_new_tokens=6))
    batched = backend.generate(reqs)
    single = HFBackend(_spec(backend.path), device="cpu", batch_size=1).generate(reqs)
    assert [r.texts for r in batched] == [r.texts for r in single]
    assert all(r.n_tokens[0] > 0 for r in batched)


def test_hidden_states_see_the_image(backend, images):
    ra, rb = (HiddenStatesRequest(QUESTION, " Ada Lee.", layers=(-1,), images=(im,)) for im in images[:2])
    a, b = backend.hidden_states([ra, rb])
    assert a.states[-1] != b.states[-1]


def test_backend_encodes_exactly_what_the_tiny_vlm_trains_on(backend, images):
    from PIL import Image

    pic = Image.open(images[0]).convert("RGB")
    seq = tv.encode_examples(backend.processor, [tv.VisualExample("a", QUESTION, "Ada Lee.")], {"a": pic}, 96)[0]
    assert backend.encode_prompt(LoglikelihoodRequest(QUESTION, " Ada Lee.", images=(images[0],))) == seq[: seq.n_prompt]
    assert backend.chat_template is not None  # the processor's, not the tokenizer's


def test_a_prompt_too_long_to_keep_its_image_is_one_line(backend, images):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="cutting it would cut the image") as e:
        backend.loglikelihood([LoglikelihoodRequest("word " * 400, " Ada.", images=(images[0],))])
    assert "\n" not in str(e.value)
