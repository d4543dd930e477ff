"""The OpenAI-compatible backend against a tiny local HTTP server written here.

Retries (429 then 200, 500 then 200), Retry-After, a hang that must time out, errors that
must not be retried, bounded concurrency, request/response shapes for chat and
completions, routing, and the API key: sent in the header, never written to results or cache.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.backends.cached import CachedBackend
from harness.backends.openai import OpenAIBackend, RemoteBackendError, safe_url
from harness.backends.routing import RoutedBackend, build_backend, routes
from harness.cache import ResponseCache
from harness.errors import ConfigError, HarnessError
from harness.api.requests import GenerateRequest
from harness.zoo.specs import ModelSpec

KEY = "sk-test-9f3c1d2e7a6b5c4d"


class FakeServer:
    """A local OpenAI-style server. `script` is a list of behaviours consumed per request
    ("429", "500", "hang", "400", "401-echo"); when empty, it answers 200 by echoing the prompt."""

    def __init__(self, delay: float = 0.0):
        self.script: list[str] = []
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.delay = delay
        self.choice_extra: dict = {}  # merged into every choice (e.g. vLLM's stop_reason)
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                    outer.paths.append(self.path)
                    outer.auth.append(self.headers.get("Authorization"))
                    action = outer.script.pop(0) if outer.script else "ok"
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                self._counted = True
                try:
                    if action == "hang":
                        outer.release.wait(5)
                        return
                    if outer.delay:
                        time.sleep(outer.delay)
                    if action in ("429", "500", "400", "401-echo"):
                        code = int(action[:3])
                        msg = f"bad key {KEY}" if action == "401-echo" else f"error {code}"
                        self._send(code, {"error": {"message": msg}}, {"Retry-After": "0"} if code == 429 else {})
                        return
                    self._send(200, outer.answer(self.path, body))
                finally:
                    self._uncount()

            def _uncount(self):
                # A request leaves the count when its answer is ready, before it is written: once
                # written, the client may send its next request before this thread runs again
                # (on a loaded machine), which is not two requests in flight.
                if getattr(self, "_counted", False):
                    self._counted = False
                    with outer.lock:
                        outer.in_flight -= 1

            def _send(self, code, payload, headers=None):
                self._uncount()
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, path: str, body: dict) -> dict:
        """Echo: the text is 'echo:' + the prompt (or last message); 3 fake tokens per choice."""
        chat = path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        if isinstance(prompt, list):  # content parts: echo the text part, count the images
            images = sum(1 for part in prompt if part["type"] == "image_url")
            prompt = f"{images} image(s) + " + next(part["text"] for part in prompt if part["type"] == "text")
        choices = []
        for i in range(body.get("n", 1)):
            text = f"echo:{prompt}" + (f"#{i}" if body.get("n", 1) > 1 else "")
            choice: dict = {"index": i, **self.choice_extra}
            k = body.get("top_logprobs", 0) if chat else (body.get("logprobs") or 0)
            tops = [{"a": -0.1, "b": -2.5, "c": -3.0, "d": -4.0}] * 3  # server adds an extra entry
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
                if body.get("logprobs"):
                    choice["logprobs"] = {"content": [
                        {"token": "a", "logprob": -0.1,
                         "top_logprobs": [{"token": t, "logprob": v} for t, v in list(s.items())[: k + 1]]}
                        for s in tops]}
            else:
                choice["text"] = text
                if "logprobs" in body:
                    choice["logprobs"] = {"tokens": ["a", "a", "a"], "token_logprobs": [-0.1] * 3,
                                          "top_logprobs": [dict(list(s.items())[: k + 1]) for s in tops]}
            choices.append(choice)
        return {"choices": choices, "usage": {"completion_tokens": 3 * len(choices)}}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _spec(url: str, **settings) -> ModelSpec:
    openai = {"base_url": url, "model": "tiny", "api_key_env": "HARNESS_TEST_KEY", "backoff_s": 0.01,
              "max_backoff_s": 0.05, "timeout_s": 5.0, **settings}
    return ModelSpec(name="remote", backend="openai", chat_template="none", openai=openai)


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_KEY", KEY)


REQ = GenerateRequest(prompt="What does Ada like?", max_new_tokens=8, chat=False)


@pytest.mark.parametrize("code", ["429", "500"])
def test_retries_then_succeeds(key_env, code):
    with FakeServer() as srv:
        srv.script = [code]
        b = OpenAIBackend(_spec(srv.url))
        [resp] = b.generate([REQ])
        assert resp.texts == ["echo:What does Ada like?"] and resp.n_tokens == [3]
        assert b.attempts == 2 and len(srv.bodies) == 2
        assert srv.auth == [f"Bearer {KEY}"] * 2  # the key is sent, on every attempt


def test_gives_up_after_max_retries_with_one_line_error(key_env):
    with FakeServer() as srv:
        srv.script = ["500"] * 5
        b = OpenAIBackend(_spec(srv.url, max_retries=2))
        with pytest.raises(RemoteBackendError, match=r"failed after 3 attempts: HTTP 500") as e:
            b.generate([REQ])
        assert len(srv.bodies) == 3 and "\n" not in str(e.value)


def test_hang_times_out(key_env):
    with FakeServer() as srv:
        srv.script = ["hang", "hang"]
        b = OpenAIBackend(_spec(srv.url, timeout_s=0.3, max_retries=1))
        start = time.time()
        with pytest.raises(RemoteBackendError, match="timed out after 0.3s"):
            b.generate([REQ])
        assert b.attempts == 2 and time.time() - start < 3.0


def test_client_errors_are_not_retried_and_the_key_is_redacted(key_env):
    with FakeServer() as srv:
        srv.script = ["400"]
        b = OpenAIBackend(_spec(srv.url))
        with pytest.raises(RemoteBackendError, match="HTTP 400: error 400"):
            b.generate([REQ])
        assert b.attempts == 1
        srv.script = ["401-echo"]
        with pytest.raises(RemoteBackendError) as e:
            b.generate([REQ])
        assert KEY not in str(e.value) and "***" in str(e.value) and "$HARNESS_TEST_KEY" in str(e.value)


def test_missing_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_KEY", raising=False)
    b = OpenAIBackend(_spec("http://127.0.0.1:9/v1"))
    with pytest.raises(ConfigError, match="HARNESS_TEST_KEY"):
        b.generate([REQ])


def test_concurrency_is_bounded_and_order_kept(key_env):
    with FakeServer(delay=0.15) as srv:
        b = OpenAIBackend(_spec(srv.url, max_concurrency=3))
        reqs = [GenerateRequest(prompt=f"q{i}", max_new_tokens=4, chat=False) for i in range(9)]
        start = time.time()
        out = b.generate(reqs)
        elapsed = time.time() - start
        assert [r.texts[0] for r in out] == [f"echo:q{i}" for i in range(9)]
        assert 2 <= srv.max_in_flight <= 3
        assert elapsed < 9 * 0.15  # really concurrent: well under the serial time


def test_chat_and_completions_bodies_and_top_logprobs(key_env):
    with FakeServer() as srv:
        chat_spec = _spec(srv.url).model_copy(update={"chat_template": "auto"})
        b = OpenAIBackend(chat_spec)
        req = GenerateRequest(prompt="Hi", system="Be brief.", max_new_tokens=5, temperature=0.7, seed=3,
                              n=2, stop=("\n",), top_logprobs=2)
        [resp] = b.generate([req])
        body = srv.bodies[-1]
        assert srv.paths[-1] == "/v1/chat/completions"
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        assert (body["max_tokens"], body["temperature"], body["seed"], body["n"], body["stop"]) == (5, 0.7, 3, 2, ["\n"])
        assert body["logprobs"] is True and body["top_logprobs"] == 2
        assert resp.texts == ["echo:Hi#0", "echo:Hi#1"] and resp.n_tokens == [3, 3]
        # the server's extra (k+1-th) entry is dropped: the k likeliest remain
        assert resp.top_logprobs == [[{"a": -0.1, "b": -2.5}] * 3] * 2

        raw = OpenAIBackend(_spec(srv.url))  # chat_template none -> completions, system prepended as HF does
        [resp] = raw.generate([GenerateRequest(prompt="Hi", system="Be brief.", max_new_tokens=5, top_logprobs=1)])
        assert srv.paths[-1] == "/v1/completions" and srv.bodies[-1]["prompt"] == "Be brief.\n\nHi"
        assert srv.bodies[-1]["logprobs"] == 1 and "seed" not in srv.bodies[-1]
        assert resp.top_logprobs == [[{"a": -0.1}] * 3]
        [plain] = raw.generate([REQ])
        assert "logprobs" not in srv.bodies[-1] and plain.top_logprobs is None and plain.n_tokens == [3]


def test_eos_counted_by_vllm_is_not_a_text_token(key_env):
    """vLLM's usage counts the EOS token; `stop_reason: null` with `finish_reason: stop` says
    it stopped on EOS, so one is taken off (HF's n_tokens counts text tokens only)."""
    with FakeServer() as srv:
        b = OpenAIBackend(_spec(srv.url))
        srv.choice_extra = {"finish_reason": "stop", "stop_reason": None}
        assert b.generate([REQ])[0].n_tokens == [2]
        srv.choice_extra = {"finish_reason": "stop", "stop_reason": "."}  # a stop string: no EOS counted
        assert b.generate([REQ])[0].n_tokens == [3]
        srv.choice_extra = {"finish_reason": "length"}
        assert b.generate([REQ])[0].n_tokens == [3]


def test_identity_never_holds_credentials(key_env):
    spec = _spec("https://user:pw@api.example.com/v1/?token=abc")
    b = OpenAIBackend(spec)
    assert b.identity == "openai:https://api.example.com/v1#tiny"
    assert safe_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert KEY not in spec.model_dump_json()


def test_routing_remote_model_and_mixed(tiny_model_dir):
    remote = _spec("http://127.0.0.1:9/v1")
    assert routes(remote) == {"generate": "openai"}  # no weights: nothing for HF
    served_locally = remote.model_copy(update={"path": str(tiny_model_dir)})
    table = routes(served_locally)
    assert table["generate"] == "openai" and table["loglikelihood"] == "hf"
    b = build_backend(served_locally, device="cpu")
    assert isinstance(b, RoutedBackend) and b.identity.startswith("sha256:")  # provenance: the weights
    assert b.cache_identity("generate").startswith("openai:") and b.cache_identity("loglikelihood") == b.identity
    with pytest.raises(ConfigError, match="needs an `openai:` section"):
        routes(ModelSpec(name="x", path=str(tiny_model_dir), backend="openai"))
    with pytest.raises(ConfigError, match="cannot answer 'loglikelihood'"):
        routes(ModelSpec(name="x", path=str(tiny_model_dir), backends={"loglikelihood": "openai"}, openai={}))
    with pytest.raises(HarnessError, match="unknown backend"):
        routes(ModelSpec(name="x", path=str(tiny_model_dir), backend="vlm"))


def test_key_never_reaches_results_or_cache(tmp_path, key_env, tiny_model_dir):
    """A full run, generation behind the fake server (log-likelihoods would go to HF): the key
    was used (the server saw it), and no file the run wrote contains it."""
    from harness.config import parse_config
    from harness.runner import Runner

    with FakeServer() as srv:
        cfg = parse_config({
            "zoo": {"remote": {**_spec(srv.url).model_dump(exclude={"name"}), "path": str(tiny_model_dir)}},
            "models": ["remote"], "methods": ["none"],
            "benchmarks": [{"name": "fictitious-facts", "params": {"forget_split": "forget10"}}],
            "metrics": ["rouge_l_recall@forget"], "limit": 3,
            "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
        })
        report = Runner(cfg).run()
        assert srv.auth and all(a == f"Bearer {KEY}" for a in srv.auth)
        assert report.cache_misses > 0
        calls = len(srv.bodies)
        Runner(cfg).run()  # rerun: answered from the shared cache, no HTTP calls
        assert len(srv.bodies) == calls
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "summary.json" for p in files) and any(p.suffix == ".sqlite" for p in files)
    for p in files:
        assert KEY.encode() not in p.read_bytes(), p


def test_cached_backend_keys_each_kind_by_its_backend(tmp_path, key_env, tiny_model_dir):
    with FakeServer() as srv:
        spec = _spec(srv.url).model_copy(update={"path": str(tiny_model_dir)})
        cache = ResponseCache(tmp_path / "c.sqlite")
        routed = build_backend(spec, device="cpu")
        cached = CachedBackend(routed, cache)
        cached.run([REQ])
        again = CachedBackend(build_backend(spec, device="cpu"), cache)
        assert again.run([REQ])[0].texts == ["echo:What does Ada like?"] and again.stats.hits == 1
        key = ResponseCache.key(routed.cache_identity("generate"), REQ)
        assert key in cache.get_many([key])
        assert not cache.get_many([ResponseCache.key(routed.identity, REQ)])  # not under the HF identity
        assert len(srv.bodies) == 1
        cache.close()


def test_cli_validate_accepts_routed_spec(tiny_model_dir, write_config):
    from typer.testing import CliRunner

    from harness.cli import app

    spec = {"path": str(tiny_model_dir), "chat_template": "none", "backends": {"generate": "openai"},
            "openai": {"base_url": "http://127.0.0.1:9/v1"}}
    cfg = {"zoo": {"m": spec}, "models": ["m"], "methods": ["none"], "benchmarks": ["fictitious-facts"]}
    p = write_config(cfg)
    ok = CliRunner().invoke(app, ["validate", str(p)])
    assert ok.exit_code == 0, ok.output
    cfg["zoo"]["m"]["backends"] = {"hidden_states": "openai"}
    p = write_config(cfg)
    bad = CliRunner().invoke(app, ["validate", str(p)])
    assert bad.exit_code == 2 and "cannot answer 'hidden_states'" in bad.output
    Path(p).unlink()


def test_images_go_as_content_parts_to_a_vision_model(key_env, tmp_path):
    import base64

    from harness.errors import HarnessError

    pic = tmp_path / "face.png"
    pic.write_bytes(b"\x89PNG picture bytes")
    req = GenerateRequest(prompt="Who is this?", images=(str(pic),), max_new_tokens=5)
    with FakeServer() as srv:
        vlm = OpenAIBackend(_spec(srv.url).model_copy(update={"chat_template": "auto", "kind": "image-text-to-text"}))
        assert vlm.sees_images
        [resp] = vlm.run([req])
        parts = srv.bodies[-1]["messages"][-1]["content"]
        assert parts[0]["type"] == "image_url" and parts[-1] == {"type": "text", "text": "Who is this?"}
        url = parts[0]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == pic.read_bytes()
        assert resp.texts == ["echo:1 image(s) + Who is this?"]
        text_only = OpenAIBackend(_spec(srv.url).model_copy(update={"chat_template": "auto"}))
        with pytest.raises(HarnessError, match="cannot see images"):
            text_only.run([req])
        completions = OpenAIBackend(_spec(srv.url, endpoint="completions").model_copy(update={"kind": "image-text-to-text"}))
        with pytest.raises(HarnessError, match="images need the chat endpoint"):
            completions.run([req])
