"""The vLLM backend (in-process engine and `vllm serve` + the openai backend) against HF.

Runs only where vLLM is importable: the `.venv-vllm` virtualenv with the CPU build
(`.ci/run` runs `pytest -m vllm` there). The tiny-facts model has head dim 32, which the
CPU attention backend needs. One engine serves the whole module (about 40 s to start on
2 cores), base model and LoRA adapter alike; the server test starts its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (the .venv-vllm virtualenv has it)")
# The engine core in this process: no fork/spawn of the pytest process, faster start.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from harness.backends.hf import HFBackend  # noqa: E402
from harness.backends.openai import OpenAIBackend  # noqa: E402
from harness.backends.routing import RoutedBackend, build_backend, routes  # noqa: E402
from harness.backends.vllm import VLLMBackend, shutdown_engine  # noqa: E402
from harness.api.requests import GenerateRequest, LoglikelihoodRequest  # noqa: E402
from harness.zoo.specs import ModelSpec  # noqa: E402

pytestmark = pytest.mark.vllm

VLLM_SETTINGS = {"max_model_len": 256, "engine_args": {"enforce_eager": True}}


@pytest.fixture(scope="module")
def facts_dir() -> Path:
    from harness.benchmarks.fictitious_facts_models import build_tiny_facts

    return build_tiny_facts()


@pytest.fixture(scope="module")
def spec(facts_dir) -> ModelSpec:
    return ModelSpec(name="tiny-facts", path=str(facts_dir), chat_template="none", dtype="float32", vllm=VLLM_SETTINGS)


@pytest.fixture(scope="module")
def prompts() -> list[tuple[str, str]]:
    """(prompt, target) pairs: forget and retain questions the model memorised."""
    from harness.benchmarks.fictitious_facts import FictitiousFacts

    bench = FictitiousFacts()
    items = bench.split(bench.forget_split())[:5] + bench.split("retain90")[:5]
    return [(bench.prompt(i), bench.target(i.answer)) for i in items]


@pytest.fixture(scope="module")
def adapter(facts_dir, tmp_path_factory) -> Path:
    """A random (non-zero) LoRA adapter: it must change answers, identically on both backends."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(facts_dir)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    get_peft_model(base, cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vllm_backend(spec):
    b = VLLMBackend(spec, lora_expected=True)  # one engine for the base model and its adapter
    yield b
    shutdown_engine()


def _gen(prompts, **kw) -> list[GenerateRequest]:
    return [GenerateRequest(prompt=p, max_new_tokens=24, **kw) for p, _ in prompts]


def test_greedy_generation_identical_to_hf(spec, prompts, vllm_backend):
    hf = HFBackend(spec, device="cpu")
    reqs = _gen(prompts) + [
        GenerateRequest(prompt=prompts[0][0], max_new_tokens=24, stop=(".",)),
        GenerateRequest(prompt=prompts[1][0], max_new_tokens=3, n=2),
        GenerateRequest(prompt=prompts[2][0], max_new_tokens=24, system="Answer briefly."),
    ]
    start = time.time()
    got = vllm_backend.generate(reqs)
    print(f"vLLM: {len(reqs)} requests in {time.time() - start:.1f}s (engine start included)")
    want = hf.generate(reqs)
    assert [g.texts for g in got] == [w.texts for w in want]
    assert [g.n_tokens for g in got] == [w.n_tokens for w in want]
    # the model knows these facts: the answers are not empty noise
    hits = sum(target.strip(" .") in g.texts[0] for g, (_, target) in zip(got, prompts))
    assert hits >= len(prompts) // 2
    assert got[len(prompts)].texts[0] == want[0].texts[0].split(".")[0]  # cut at the first stop string
    assert vllm_backend.identity == hf.identity
    assert vllm_backend.cache_identity("generate") == hf.identity + "+backend:vllm"


def test_top_logprobs_agree_with_hf(spec, prompts, vllm_backend):
    hf = HFBackend(spec, device="cpu")
    reqs = [GenerateRequest(prompt=p, max_new_tokens=6, top_logprobs=5) for p, _ in prompts[:4]]
    for g, w in zip(vllm_backend.generate(reqs), hf.generate(reqs)):
        assert len(g.top_logprobs[0]) == len(w.top_logprobs[0]) == g.n_tokens[0]
        for gs, ws in zip(g.top_logprobs[0], w.top_logprobs[0]):
            assert gs.keys() == ws.keys()
            assert max(abs(gs[t] - ws[t]) for t in ws) < 1e-3


def test_lora_adapter_changes_outputs_as_hf_does(spec, prompts, adapter, vllm_backend):
    engine_before = id(vllm_backend._engine().llm)
    tuned = VLLMBackend(spec, adapter=str(adapter))
    hf_tuned = HFBackend(spec, device="cpu", adapter=str(adapter))
    reqs = _gen(prompts)
    got, want = tuned.generate(reqs), hf_tuned.generate(reqs)
    assert id(tuned._engine().llm) == engine_before  # the same engine serves the adapter
    assert [g.texts for g in got] == [w.texts for w in want]
    base = vllm_backend.generate(reqs)
    assert sum(g.texts != b.texts for g, b in zip(got, base)) >= len(reqs) // 2  # the adapter matters
    assert tuned.identity == hf_tuned.identity != vllm_backend.identity


def test_sampling_is_seeded(vllm_backend, prompts):
    req = GenerateRequest(prompt=prompts[0][0], max_new_tokens=12, temperature=1.5, n=3, seed=7)
    a, b = vllm_backend.generate([req]), vllm_backend.generate([req])
    c = vllm_backend.generate([GenerateRequest(prompt=prompts[0][0], max_new_tokens=12, temperature=1.5, n=3, seed=8)])
    assert a[0].texts == b[0].texts and len(a[0].texts) == 3
    assert a[0].texts != c[0].texts


def test_run_with_vllm_generation_matches_hf_only_run(facts_dir, tmp_path, vllm_backend):
    """`backend: auto` end to end: generation through vLLM, probabilities through HF; the
    metrics equal those of an HF-only run, and the cache keeps the two apart."""
    from harness.config import parse_config
    from harness.results import find_summaries, read_summary
    from harness.runner import Runner

    model = {"path": str(facts_dir), "chat_template": "none", "dtype": "float32", "vllm": VLLM_SETTINGS}
    summaries = {}
    for name, extra in (("auto", {}), ("hf-only", {"backends": {"generate": "hf"}})):
        cfg = parse_config({
            "zoo": {"tf": {**model, **extra}}, "models": ["tf"], "methods": ["none"],
            "benchmarks": [{"name": "fictitious-facts", "params": {"forget_split": "forget10"}}],
            "metrics": ["rouge_l_recall@forget", "exact_match_recall@forget", "probability@forget"], "limit": 4,
            "output_dir": str(tmp_path / name), "cache_dir": str(tmp_path / "cache"), "device": "cpu"})
        runner = Runner(cfg)
        if name == "auto":
            assert runner.session.backends.make(runner.session.zoo.get("tf")).backend.by_kind["generate"].name == "vllm"
        report = runner.run()
        [summary] = [read_summary(f) for f in find_summaries(tmp_path / name)]
        summaries[name] = (summary, report)
    auto, hf_only = summaries["auto"][0], summaries["hf-only"][0]
    assert auto.provenance.model_identity == hf_only.provenance.model_identity
    for mid, value in hf_only.metrics.items():
        assert auto.metrics[mid].value == pytest.approx(value.value, abs=1e-6), mid
    # HF-only reuses the probabilities (same backend, same key) but not vLLM's generations
    assert summaries["hf-only"][1].cache_hits > 0 and summaries["hf-only"][1].cache_misses > 0


def test_loglikelihood_from_prompt_logprobs_matches_hf(spec, prompts, vllm_backend):
    from harness.errors import HarnessError

    reqs = [LoglikelihoodRequest(context=p, continuation=t, moments=True) for p, t in prompts[:4]]
    reqs.append(LoglikelihoodRequest(context=prompts[0][0], continuation=" Completely unrelated words here.",
                                     moments=True))
    with pytest.raises(HarnessError, match="LoRA-enabled engine"):  # a vllm-cpu limitation, said in one line
        vllm_backend.loglikelihood(reqs[:1])
    plain = VLLMBackend(spec.model_copy(update={"vllm": spec.vllm.model_copy(update={"enable_lora": False})}))
    hf = HFBackend(spec, device="cpu")
    for g, w in zip(plain.loglikelihood(reqs), hf.loglikelihood(reqs)):
        assert g.n_tokens == w.n_tokens > 0
        assert g.token_greedy == w.token_greedy
        for field in ("token_logprobs", "token_mu", "token_sigma"):
            a, b = getattr(g, field), getattr(w, field)
            assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3, field
    assert any(not all(g.token_greedy) for g in plain.loglikelihood(reqs[-1:]))  # the unrelated one


def test_auto_routing_sends_generation_to_vllm(spec):
    table = routes(spec)
    assert table["generate"] == "vllm" and table["loglikelihood"] == table["hidden_states"] == "hf"
    b = build_backend(spec, device="cpu")
    assert isinstance(b, RoutedBackend) and isinstance(b.by_kind["generate"], VLLMBackend)
    assert b.identity == HFBackend(spec).identity and b.chat_template_hash is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(facts_dir, vllm_backend):
    """`vllm serve` on a free loopback port, torn down after the module."""
    shutdown_engine()  # free the in-process engine's KV cache first
    import httpx

    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    log = open(Path(facts_dir).parent / f"vllm-serve-{port}.log", "w")
    # The server behind `vllm serve`; vllm-cpu 0.32's `vllm` CLI itself dies looking up the
    # version of a distribution named "vllm" (it is installed as "vllm-cpu").
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(facts_dir), "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "256", "--enforce-eager",
           "--served-model-name", "tiny-facts", "--max-logprobs", "20", "--api-key", "sk-local-test"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            pytest.fail(f"vllm serve did not come up in 300 s; see {log.name}")
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_openai_backend_against_vllm_serve(spec, prompts, server, monkeypatch):
    monkeypatch.setenv("HARNESS_VLLM_KEY", "sk-local-test")
    remote = ModelSpec.model_validate({**spec.model_dump(), "backend": "openai", "openai": {
        "base_url": server, "model": "tiny-facts", "api_key_env": "HARNESS_VLLM_KEY", "max_concurrency": 4}})
    api = OpenAIBackend(remote)
    hf = HFBackend(spec, device="cpu")
    reqs = _gen(prompts) + [GenerateRequest(prompt=prompts[0][0], max_new_tokens=24, stop=(".",))]
    got, want = api.generate(reqs), hf.generate(reqs)
    assert [g.texts for g in got] == [w.texts for w in want]
    assert [g.n_tokens for g in got[:-1]] == [w.n_tokens for w in want[:-1]]
    top_reqs = [GenerateRequest(prompt=p, max_new_tokens=5, top_logprobs=5) for p, _ in prompts[:3]]
    for g, w in zip(api.generate(top_reqs), hf.generate(top_reqs)):
        assert len(g.top_logprobs[0]) == len(w.top_logprobs[0])
        for gs, ws in zip(g.top_logprobs[0], w.top_logprobs[0]):
            assert gs.keys() == ws.keys()
            assert max(abs(gs[t] - ws[t]) for t in ws) < 1e-3
    monkeypatch.setenv("HARNESS_VLLM_KEY", "sk-wrong")
    from harness.backends.openai import RemoteBackendError

    with pytest.raises(RemoteBackendError, match="HTTP 401"):
        OpenAIBackend(remote).generate(reqs[:1])


# ---- images: an image-text-to-text model (the untrained tiny LLaVA of conftest.py) ----------
@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir, face_images):
    """(vLLM backend, HF backend, two face images) for the tiny LLaVA; its engine replaces the
    text model's (one engine at a time), so these tests come last in the module."""
    shutdown_engine()
    images = face_images[:2]
    settings = {**VLLM_SETTINGS, "max_model_len": 192}  # the tiny LLaVA's max_position_embeddings
    spec = ModelSpec(name="v", path=str(tiny_vlm_dir), kind="image-text-to-text", dtype="float32", vllm=settings)
    yield VLLMBackend(spec), HFBackend(spec, device="cpu"), images
    shutdown_engine()


def test_images_reach_the_vllm_model_as_they_reach_hf(vlm):
    """The same question with two images: two log-likelihoods and two cache keys on vLLM, each
    equal to HF's (vLLM expands the image placeholder itself, as the HF processor does)."""
    from harness.api.requests import request_key

    backend, hf, images = vlm
    assert backend.sees_images
    reqs = [LoglikelihoodRequest("Who is it?", " Ada Lee.", images=(im,)) for im in images]
    reqs.append(LoglikelihoodRequest("Who is it?", " Ada Lee."))  # no image: plain text on the same model
    got, want = backend.loglikelihood(reqs), hf.loglikelihood(reqs)
    for g, w in zip(got, want):
        assert len(g.token_logprobs) == len(w.token_logprobs)
        assert max(abs(a - b) for a, b in zip(g.token_logprobs, w.token_logprobs)) < 1e-4
        assert g.token_greedy == w.token_greedy
    assert abs(sum(got[0].token_logprobs) - sum(got[1].token_logprobs)) > 1e-3  # the image matters
    assert request_key(reqs[0]) != request_key(reqs[1])
    # vLLM is given one placeholder per image; the HF processor's expansion is what it adds
    assert len(backend.encode_prompt(reqs[0])) < len(hf.encode_prompt(reqs[0]))


def test_greedy_generation_with_images_identical_to_hf(vlm):
    backend, hf, images = vlm
    reqs = [GenerateRequest("Who is it?", max_new_tokens=8, images=(im,)) for im in images]
    got, want = backend.generate(reqs), hf.generate(reqs)
    assert [g.texts for g in got] == [w.texts for w in want]
    assert [g.n_tokens for g in got] == [w.n_tokens for w in want]


def test_a_text_model_on_vllm_refuses_images_in_one_line(spec, vlm):
    from harness.errors import HarnessError

    text_model = VLLMBackend(spec)
    assert not text_model.sees_images
    with pytest.raises(HarnessError, match="cannot see images"):  # before any engine starts
        text_model.generate([GenerateRequest("Who?", images=(vlm[2][0],))])
