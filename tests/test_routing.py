"""Routing request kinds to backends, the per-kind cache identity, and the spec settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.backends import routing
from harness.backends.cached import CachedBackend
from harness.backends.hf import HFBackend
from harness.backends.routing import RoutedBackend, build_backend, routes, served_kinds
from harness.cache import ResponseCache
from harness.errors import ConfigError, HarnessError
from harness.api.requests import (
    GenerateRequest,
    GenerateResponse,
    HiddenStatesRequest,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from harness.testing import FakeBackend
from harness.zoo.specs import ModelSpec


def Fake(tag: str, identity: str) -> FakeBackend:
    """Serves generate and loglikelihood, answering with its tag so a test can see who answered
    what; its cache identity names the tag too (as a routed backend's does)."""
    b = FakeBackend(identity, serves={"generate", "loglikelihood"}, responders={
        "generate": lambda r: GenerateResponse(texts=[f"{tag}:{r.prompt}"], n_tokens=[1]),
        "loglikelihood": lambda r: LoglikelihoodResponse([-1.0 if tag == "a" else -2.0], [True], [0.0], [1.0]),
    })
    b.tag = tag
    b.cache_identity = lambda kind: f"{identity}+{tag}"
    return b


def test_auto_without_vllm_is_plain_hf(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(routing, "vllm_installed", lambda: False)
    spec = ModelSpec(name="t", path=str(tiny_model_dir))
    assert spec.backend == "auto" and set(routes(spec).values()) == {"hf"}
    assert type(build_backend(spec, device="cpu")) is HFBackend  # unchanged behaviour
    assert served_kinds(spec) == {"generate", "loglikelihood", "hidden_states", "grad_norm", "logit_lens"}


def test_auto_with_usable_vllm_routes_only_generation(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(routing, "vllm_usable", lambda device=None: True)
    table = routes(ModelSpec(name="t", path=str(tiny_model_dir)))
    assert table == {"generate": "vllm", "loglikelihood": "hf", "hidden_states": "hf", "grad_norm": "hf", "logit_lens": "hf"}
    # an explicit per-kind choice wins over auto, and a named backend gets every kind it serves
    table = routes(ModelSpec(name="t", path=str(tiny_model_dir), backends={"generate": "hf"}))
    assert set(table.values()) == {"hf"}
    table = routes(ModelSpec(name="t", path=str(tiny_model_dir), backend="vllm"))
    assert table["generate"] == table["loglikelihood"] == "vllm" and table["hidden_states"] == "hf"


def test_vllm_usable_needs_cuda_or_the_cpu_build(monkeypatch):
    import torch

    monkeypatch.setattr(routing, "vllm_installed", lambda: True)
    monkeypatch.setattr(routing, "_cpu_build", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not routing.vllm_usable("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert routing.vllm_usable("auto") and not routing.vllm_usable("cpu")
    monkeypatch.setattr(routing, "_cpu_build", lambda: True)
    assert routing.vllm_usable("cpu")


def test_routed_backend_dispatches_in_order_and_counts():
    a, b = Fake("a", "sha256:w"), Fake("b", "sha256:w")
    r = RoutedBackend({"generate": b, "loglikelihood": a}, primary=a)
    reqs = [LoglikelihoodRequest(context="c", continuation="x"), GenerateRequest(prompt="p"),
            LoglikelihoodRequest(context="c", continuation="y")]
    out = r.run(reqs)
    assert out[1].texts == ["b:p"] and out[0].token_logprobs == [-1.0] == out[2].token_logprobs
    assert b.seen == [reqs[1]] and a.seen == [reqs[0], reqs[2]] and r.calls == 3
    assert r.identity == "sha256:w" and r.cache_identity("generate") == "sha256:w+b"
    assert r.tag == "a"  # other attributes come from the primary backend
    with pytest.raises(HarnessError, match="cannot answer 'hidden_states'"):
        r.run([HiddenStatesRequest(context="c", continuation="x")])


def test_cache_keys_each_kind_by_the_backend_that_answered(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    a, b = Fake("a", "sha256:w"), Fake("b", "sha256:w")
    reqs = [GenerateRequest(prompt="p"), LoglikelihoodRequest(context="c", continuation="x")]
    CachedBackend(RoutedBackend({"generate": b, "loglikelihood": a}, primary=a), cache).run(reqs)
    # Same weights, generation now from backend "a": not answered from b's entry.
    swapped = CachedBackend(RoutedBackend({"generate": a, "loglikelihood": a}, primary=a), cache)
    out = swapped.run(reqs)
    assert out[0].texts == ["a:p"] and swapped.stats.hits == 1 and swapped.stats.misses == 1
    again = CachedBackend(RoutedBackend({"generate": b, "loglikelihood": a}, primary=a), cache)
    assert again.run(reqs)[0].texts == ["b:p"] and again.stats.hits == 2
    cache.close()


def test_plain_backends_keep_their_cache_keys(tmp_path):
    """A backend that keeps the default cache_identity (HF) is keyed by its identity, as before routing."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    p = FakeBackend("sha256:plain")
    req = GenerateRequest(prompt="q")
    CachedBackend(p, cache).run([req])
    assert cache.get_many([ResponseCache.key("sha256:plain", req)])
    cache.close()


def test_spec_settings_are_validated():
    spec = ModelSpec(name="m", path="x", vllm={"tensor_parallel_size": 4, "max_model_len": 4096,
                                               "gpu_memory_utilization": 0.8, "enable_prefix_caching": False})
    assert spec.vllm.tensor_parallel_size == 4 and spec.num_gpus == 4
    assert ModelSpec(name="m", path="x").num_gpus is None  # one GPU or none: the scheduler decides
    for bad in ({"tensor_paralel_size": 2}, {"gpu_memory_utilization": 1.5}, {"tensor_parallel_size": 0}):
        with pytest.raises(ValidationError):
            ModelSpec(name="m", path="x", vllm=bad)
    with pytest.raises(ValidationError):
        ModelSpec(name="m", path="x", backends={"embeddings": "hf"})
    with pytest.raises(ValidationError):
        ModelSpec(name="m", path="x", openai={"api_key": "sk-inline"})  # keys only through env vars


def test_vllm_missing_is_one_clear_line(tiny_model_dir):
    pytest.importorskip("harness.backends.vllm")
    from harness.backends import vllm as vb

    if routing.vllm_installed():
        pytest.skip("vLLM is installed here")
    b = vb.VLLMBackend(ModelSpec(name="t", path=str(tiny_model_dir)))
    with pytest.raises(HarnessError, match=r"pip install 'llm-safety-harness\[vllm\]'") as e:
        b.generate([GenerateRequest(prompt="hi")])
    assert "\n" not in str(e.value)
    assert b.generate([]) == []  # nothing asked: vLLM is not even imported


def test_vllm_data_parallel_points_to_vllm_serve(tiny_model_dir):
    from harness.backends.vllm import VLLMBackend, adapter_rank, _round_rank

    with pytest.raises(ConfigError, match="vllm serve --data-parallel-size"):
        VLLMBackend(ModelSpec(name="t", path=str(tiny_model_dir), vllm={"data_parallel_size": 2}))
    assert adapter_rank(None) == 0 and _round_rank(4) == 8 and _round_rank(17) == 32
    with pytest.raises(HarnessError, match="adapter_config.json"):
        adapter_rank(str(tiny_model_dir))


def test_runner_builds_routed_backends(tmp_path, toy_zoo, monkeypatch):
    """The run's backend factory goes through routing: plain HF when vLLM is absent, routed otherwise."""
    from harness.config import parse_config
    from harness.runner import Runner

    monkeypatch.setattr(routing, "vllm_installed", lambda: False)
    cfg = parse_config({"zoo": toy_zoo, "models": ["toy"], "methods": ["none"], "benchmarks": ["fictitious-facts"],
                        "output_dir": str(tmp_path / "o"), "cache": False})
    runner = Runner(cfg)
    spec = runner.session.zoo.get("toy")
    assert type(runner.session.backends.make(spec).backend) is HFBackend
    monkeypatch.setattr(routing, "vllm_usable", lambda device=None: True)
    routed = runner.session.backends.make(spec).backend
    assert isinstance(routed, RoutedBackend) and routed.by_kind["generate"].name == "vllm"
    assert routed.identity == HFBackend(spec).identity  # provenance keeps the weights' identity


class _FakeLLM:
    """Stands in for vllm.LLM: records the engine arguments, starts nothing."""

    made: list[dict] = []

    def __init__(self, **kwargs):
        from types import SimpleNamespace

        self.kwargs = kwargs
        _FakeLLM.made.append(kwargs)
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=kwargs.get("max_model_len", 2048)),
                                          engine_core=SimpleNamespace(shutdown=lambda: None))


@pytest.fixture
def fake_vllm(monkeypatch):
    import sys
    from types import ModuleType

    from harness.backends import vllm as vb

    from types import SimpleNamespace

    module = ModuleType("vllm")
    module.LLM = _FakeLLM  # type: ignore[attr-defined]
    module.__path__ = []  # type: ignore[attr-defined]  # a package, for the submodule below
    request = ModuleType("vllm.lora.request")
    request.LoRARequest = lambda **kw: SimpleNamespace(**kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.lora", ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    _FakeLLM.made = []
    vb.shutdown_engine()
    yield vb
    vb.shutdown_engine()


def _lora(path, r):
    import json

    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r}))
    return str(path)


def test_engine_args_and_one_engine_per_base_model(fake_vllm, tiny_model_dir, tmp_path, monkeypatch):
    vb = fake_vllm
    spec = ModelSpec(name="t", path=str(tiny_model_dir), dtype="bfloat16", vllm={
        "tensor_parallel_size": 2, "max_model_len": 512, "gpu_memory_utilization": 0.6,
        "enable_prefix_caching": False, "engine_args": {"enforce_eager": True, "swap_space": 1}})
    base = vb.VLLMBackend(spec, lora_expected=True)
    engine = base._engine()
    kw = _FakeLLM.made[-1]
    assert (kw["model"], kw["dtype"], kw["tensor_parallel_size"], kw["max_model_len"]) == (str(tiny_model_dir), "bfloat16", 2, 512)
    assert kw["gpu_memory_utilization"] == 0.6 and kw["enable_prefix_caching"] is False
    assert kw["enforce_eager"] is True and kw["swap_space"] == 1 and kw["trust_remote_code"] is False
    assert kw["enable_lora"] is True and kw["max_lora_rank"] == 8 and engine.max_model_len == 512
    # adapters of the same base share the engine; each gets its own LoRA id
    small = vb.VLLMBackend(spec, adapter=_lora(tmp_path / "a", 4))
    assert small._engine() is engine and len(_FakeLLM.made) == 1
    assert small._lora_request(engine).lora_int_id == 1
    # a larger rank than the engine was built for rebuilds it, once
    big = vb.VLLMBackend(spec, adapter=_lora(tmp_path / "b", 24))
    rebuilt = big._engine()
    assert rebuilt is not engine and _FakeLLM.made[-1]["max_lora_rank"] == 32 and len(_FakeLLM.made) == 2
    assert small._engine() is rebuilt and len(_FakeLLM.made) == 2
    # another base model replaces it (one engine alive by default) ...
    other = vb.VLLMBackend(spec.model_copy(update={"vllm": spec.vllm.model_copy(update={"max_model_len": 256})}))
    other._engine()
    assert len(vb._ENGINES) == 1 and "enable_lora" not in _FakeLLM.made[-1]
    # ... unless two are allowed
    monkeypatch.setenv("HARNESS_VLLM_MAX_ENGINES", "2")
    base._engine()
    other._engine()
    assert len(vb._ENGINES) == 2 and len(_FakeLLM.made) == 4
    monkeypatch.setenv("HARNESS_VLLM_MAX_ENGINES", "zero")
    with pytest.raises(ConfigError, match="HARNESS_VLLM_MAX_ENGINES"):
        vb.VLLMBackend(spec.model_copy(update={"dtype": "float32"}))._engine()


def test_adapter_without_lora_is_refused(fake_vllm, tiny_model_dir, tmp_path):
    spec = ModelSpec(name="t", path=str(tiny_model_dir), vllm={"enable_lora": False})
    with pytest.raises(ConfigError, match="enable_lora is false"):
        fake_vllm.VLLMBackend(spec, adapter=_lora(tmp_path / "a", 4))._engine()
