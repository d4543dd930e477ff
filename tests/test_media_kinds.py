"""Content-addressed media, request kinds declared once, interventions in the cache key."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from harness.api.benchmark import Benchmark
from harness.api.intervention import Intervention
from harness.api.kinds import kind, kind_names, request_kind
from harness.api.media import BlobStore, MediaRef
from harness.api.requests import GenerateRequest, LoglikelihoodRequest, request_key
from harness.backends.cached import CachedBackend
from harness.backends.factory import BackendFactory
from harness.backends.hf import HFBackend
from harness.cache import ResponseCache
from harness.config import check_capabilities
from harness.errors import ConfigError, HarnessError
from harness.testing import FakeBackend
from harness.zoo.specs import ModelSpec


def test_image_identity_is_its_content_not_its_path(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"picture one")
    b.write_bytes(b"picture one")
    ra, rb = LoglikelihoodRequest("q", " a", images=(str(a),)), LoglikelihoodRequest("q", " a", images=(str(b),))
    assert isinstance(ra.images[0], MediaRef) and ra.images[0].sha256 == rb.images[0].sha256
    assert ra == rb and request_key(ra) == request_key(rb)  # same picture, two paths: one request
    a.write_bytes(b"picture two")  # changed in place
    changed = LoglikelihoodRequest("q", " a", images=(str(a),))
    assert request_key(changed) != request_key(ra)
    with pytest.raises(HarnessError, match="changed after it was loaded"):
        ra.images[0].read_bytes()  # the old reference no longer matches the file


def test_changed_image_at_the_same_path_is_a_cache_miss(tmp_path):
    img = tmp_path / "face.png"
    img.write_bytes(b"\x89PNG first")
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = CachedBackend(FakeBackend(sees_images=True), cache)
    out1 = first.run([LoglikelihoodRequest("Who is this?", " Ada", images=(str(img),))])
    assert first.stats.misses == 1
    again = CachedBackend(FakeBackend(sees_images=True), cache)
    assert again.run([LoglikelihoodRequest("Who is this?", " Ada", images=(str(img),))]) == out1
    assert again.stats.hits == 1 and again.backend.calls == 0
    img.write_bytes(b"\x89PNG second")
    third = CachedBackend(FakeBackend(sees_images=True), cache)
    out3 = third.run([LoglikelihoodRequest("Who is this?", " Ada", images=(str(img),))])
    assert third.stats.misses == 1 and third.backend.calls == 1 and out3 != out1


def test_text_model_refuses_image_requests_in_one_line(tiny_model_dir, tmp_path):
    img = tmp_path / "x.png"
    img.write_bytes(b"pixels")
    spec = ModelSpec(name="toy", path=str(tiny_model_dir), chat_template="none", dtype="float32")
    backend = HFBackend(spec, device="cpu")
    with pytest.raises(HarnessError) as e:
        backend.run([GenerateRequest("Describe it.", images=(str(img),)), GenerateRequest("plain text")])
    msg = str(e.value)
    assert "\n" not in msg and "cannot see images" in msg and "1 request" in msg
    assert backend._loaded is None  # refused before any weights were loaded
    with pytest.raises(HarnessError, match="cannot see images"):
        CachedBackend(FakeBackend(), None).run([GenerateRequest("x", images=(str(img),))])


def test_validation_rejects_an_image_benchmark_on_a_text_model(tiny_model_dir):
    class Faces(Benchmark):
        name = "faces"
        model_kind = "image-text-to-text"
        request_kinds = ("loglikelihood",)

        def load(self):  # pragma: no cover - validation never loads data
            raise AssertionError

    text = ModelSpec(name="toy", path=str(tiny_model_dir))
    with pytest.raises(ConfigError, match="shows the model images.*'toy' is a causal-lm model"):
        check_capabilities(text, Faces, "cpu")
    check_capabilities(text.model_copy(update={"kind": "image-text-to-text"}), Faces, "cpu")
    with pytest.raises(ValueError, match="unknown request kind"):
        ModelSpec(name="x", path="y", backends={"telepathy": "hf"})


def test_blob_store_is_content_addressed(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    ref = store.put(b"generated image")
    assert ref.path.endswith(f"{ref.sha256}.png") and ref.read_bytes() == b"generated image"
    assert store.put(b"generated image") == ref and len(list((tmp_path / "blobs").rglob("*.png"))) == 1


# --- a new request kind: one declaration plus a backend that serves it ----------------------
@dataclass
class TokenCountResponse:
    n: int


@pytest.fixture
def token_count_kind(monkeypatch):
    """Declares a `token_count_test` kind for one test; the registry is restored afterwards."""
    import harness.api.kinds as kinds

    kinds.kind_names()  # the built-ins first
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))

    @request_kind("token_count_test", TokenCountResponse)
    @dataclass(frozen=True)
    class TokenCountRequest:
        text: str
        images: tuple = ()

    return TokenCountRequest


def test_a_new_kind_is_routed_cached_and_checked(tmp_path, token_count_kind):
    TokenCountRequest = token_count_kind
    assert "token_count_test" in kind_names() and kind("token_count_test").request is TokenCountRequest
    counter = FakeBackend(responders={"token_count_test": lambda r: TokenCountResponse(len(r.text.split()))})
    cache = ResponseCache(tmp_path / "c.sqlite")
    out = CachedBackend(counter, cache).run([TokenCountRequest("three word text"), GenerateRequest("hi")])
    assert out[0] == TokenCountResponse(3) and counter.calls == 2
    again = CachedBackend(FakeBackend(responders={"token_count_test": lambda r: TokenCountResponse(-1)}), cache)
    assert again.run([TokenCountRequest("three word text")]) == [TokenCountResponse(3)]  # decoded from the cache
    with pytest.raises(HarnessError, match="cannot answer 'token_count_test'"):
        FakeBackend(serves={"generate"}).run([TokenCountRequest("x")])


def test_the_declared_kinds_are_the_built_ins_outside_that_test():
    assert kind_names() == ("generate", "loglikelihood", "hidden_states", "grad_norm", "generate_image", "logit_lens")


def test_intervention_enters_around_misses_and_keys_the_cache(tmp_path):
    entered: list[str] = []

    @contextmanager
    def steer(backend):
        entered.append(backend.identity)
        yield

    cache = ResponseCache(tmp_path / "c.sqlite")
    factory = BackendFactory(cache)
    plain = factory._cached(FakeBackend("m"), cache)
    iv = Intervention.from_recipe("steer", {"layer": 2, "alpha": 1.0}, steer)
    same = Intervention.from_recipe("steer", {"alpha": 1.0, "layer": 2})
    assert iv == same and iv.identity == same.identity  # the recipe names it, not the hook
    plain.backend.model = object()  # an in-process model (what interventions act on)
    steered = factory.intervene(plain, iv)
    req = [LoglikelihoodRequest("q", " a")]
    steered.run(req)
    assert entered == ["m"] and steered.identity == f"m+{iv.identity}"
    plain.run(req)  # the plain model's answer is not the steered one's cache entry
    assert plain.stats.misses == 1
    factory.intervene(plain, iv).run(req)  # a rerun of the intervention: from the cache, no hook
    assert entered == ["m"]
    other = Intervention.from_recipe("steer", {"layer": 2, "alpha": 5.0}, steer)
    factory.intervene(plain, other).run(req)
    assert len(entered) == 2
