"""The response cache: reruns make zero model calls; keys separate models and parameters."""

from __future__ import annotations

import pytest

from harness.testing import FakeBackend
from harness.backends.cached import CachedBackend
from harness.cache import ResponseCache
from harness.api.requests import (
    GenerateRequest,
    HiddenStatesRequest,
    LoglikelihoodRequest,
)


def CountingBackend(identity: str = "model-a") -> FakeBackend:
    """The public fake backend: deterministic answers from the request text, calls counted."""
    return FakeBackend(identity)


def _requests():
    return [
        GenerateRequest(prompt="q1"),
        LoglikelihoodRequest(context="q1", continuation=" a"),
        HiddenStatesRequest(context="q1", continuation=" a", layers=(1, -1)),
        GenerateRequest(prompt="q1"),  # a duplicate: sent once
    ]


def test_rerun_makes_zero_model_calls(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = CachedBackend(CountingBackend(), cache)
    out1 = first.run(_requests())
    assert first.backend.calls == 3 and first.stats.misses == 3 and first.stats.hits == 0

    cache2 = ResponseCache(tmp_path / "c.sqlite")  # a new process opening the same file
    second = CachedBackend(CountingBackend(), cache2)
    out2 = second.run(_requests())
    assert second.backend.calls == 0
    assert second.stats.hits == 3 and second.stats.misses == 0
    assert out1 == out2
    assert set(out2[2].states) == {1, -1}  # int layer keys survive JSON


def test_key_separates_models_and_generation_parameters(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    CachedBackend(CountingBackend("model-a"), cache).run([GenerateRequest(prompt="q")])
    other_model = CachedBackend(CountingBackend("model-b"), cache)
    other_model.run([GenerateRequest(prompt="q")])
    assert other_model.backend.calls == 1
    other_params = CachedBackend(CountingBackend("model-a"), cache)
    other_params.run([GenerateRequest(prompt="q", max_new_tokens=7), GenerateRequest(prompt="q", stop=("\n",))])
    assert other_params.backend.calls == 2


def test_sampled_generation_cached_only_with_a_seed(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    seeded = GenerateRequest(prompt="q", temperature=1.0, seed=3)
    unseeded = GenerateRequest(prompt="q", temperature=1.0)
    CachedBackend(CountingBackend(), cache).run([seeded, unseeded])
    again = CachedBackend(CountingBackend(), cache)
    again.run([seeded, unseeded])
    assert again.backend.calls == 1  # only the unseeded request is sent again
    other_seed = CachedBackend(CountingBackend(), cache)
    other_seed.run([GenerateRequest(prompt="q", temperature=1.0, seed=4)])
    assert other_seed.backend.calls == 1


def test_without_cache_everything_is_sent(tmp_path):
    backend = CachedBackend(CountingBackend(), None)
    backend.run(_requests())
    backend.run(_requests())
    assert backend.backend.calls == 6


@pytest.mark.parametrize("chunk", [1, 2])
def test_chunks_are_stored_as_they_finish(tmp_path, monkeypatch, chunk):
    """An interruption after the first chunk keeps that chunk: the rerun resumes there."""
    import harness.backends.cached as cached_mod

    monkeypatch.setattr(cached_mod, "CHUNK", chunk)
    cache = ResponseCache(tmp_path / "c.sqlite")

    class Failing(FakeBackend):
        def answer(self, kind_name, requests):
            if self.calls >= chunk:
                raise KeyboardInterrupt
            return super().answer(kind_name, requests)

    reqs = [LoglikelihoodRequest(context="c", continuation=f" {i}") for i in range(4)]
    with pytest.raises(KeyboardInterrupt):
        CachedBackend(Failing("model-a"), cache).run(reqs)
    resumed = CachedBackend(CountingBackend(), cache)
    resumed.run(reqs)
    assert resumed.stats.hits == chunk and resumed.backend.calls == 4 - chunk


def test_hf_backend_rerun_never_loads_the_model(tmp_path, tiny_model_dir):
    from harness.backends.hf import HFBackend
    from harness.zoo.specs import ModelSpec

    spec = ModelSpec(name="t", path=str(tiny_model_dir))
    reqs = [LoglikelihoodRequest(context="Question: x\nAnswer:", continuation=" y"), GenerateRequest(prompt="Q", max_new_tokens=3)]
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = HFBackend(spec)
    out1 = CachedBackend(first, cache).run(reqs)
    assert first.calls == 2
    second = HFBackend(spec)
    out2 = CachedBackend(second, cache).run(reqs)
    assert second.calls == 0 and second._loaded is None
    assert out1 == out2
