"""The OpenAI backend against misbehaving servers (issue 18): malformed 200 answers are retried,
then reported and never cached; the key never leaks; a trickling server hits the deadline."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from harness.backends.cached import CachedBackend
from harness.backends.openai import MalformedResponseError, OpenAIBackend, RemoteBackendError
from harness.cache import ResponseCache
from harness.errors import ConfigError, HarnessError
from harness.api.requests import GenerateRequest
from tests.test_openai_backend import KEY, REQ, FakeServer, _spec


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_KEY", KEY)


class BadServer(FakeServer):
    """Answers 200 with `bodies.pop(0)` (a JSON value, or bytes sent as they are) while any
    remain, then echoes like FakeServer."""

    def __init__(self, *bad):
        super().__init__()
        self.bad = list(bad)
        self.sent_bad = 0
        handler = self.httpd.RequestHandlerClass
        outer = self
        original = handler._send

        def _send(self, code, payload, headers=None):
            if code == 200 and outer.bad:
                outer.sent_bad += 1
                bad = outer.bad.pop(0)
                data = bad if isinstance(bad, bytes) else json.dumps(bad).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            original(self, code, payload, headers)

        handler._send = _send


CHAT = GenerateRequest(prompt="Hi", max_new_tokens=4, chat=True)
TOP = GenerateRequest(prompt="Hi", max_new_tokens=4, chat=False, top_logprobs=2)
ok_usage = {"usage": {"completion_tokens": 1}}
MALFORMED = [
    # (request, body, words of the error)
    (CHAT, {"choices": [{"index": 0}], **ok_usage}, "no message.content"),
    (CHAT, {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}}], **ok_usage},
     "got null"),
    (REQ, {"choices": [{"index": 0}], **ok_usage}, "no text"),
    (REQ, {"choices": [{"index": 0, "text": None}], **ok_usage}, "no text"),
    (REQ, [{"text": "a list body"}], "JSON list"),
    (REQ, {"choices": ["just a string"], **ok_usage}, "list of objects"),
    (REQ, {"choices": "abc"}, "list of objects"),
    (REQ, {"choices": [], **ok_usage}, "asked for 1 samples, got 0"),
    (REQ, {"choices": [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}], **ok_usage}, "got 2"),
    (REQ, {"choices": [{"index": 3, "text": "a"}], **ok_usage}, "indexes"),
    (REQ, {"choices": [{"index": 0, "text": "a"}], "usage": {"completion_tokens": "1"}}, "usage"),
    (REQ, {"choices": [{"index": 0, "text": "a"}]}, "neither token logprobs nor usage"),
    (TOP, {"choices": [{"index": 0, "text": "a"}], **ok_usage}, "top_logprobs were asked for"),
    (TOP, {"choices": [{"index": 0, "text": "a", "logprobs": {"tokens": ["a"], "top_logprobs": ["x"]}}]},
     "unreadable logprobs"),
    (REQ, b"not json at all", "not JSON"),
    (REQ, b"\xff\xfe", "not JSON"),
]


@pytest.mark.parametrize("request_, body, words", MALFORMED, ids=[m[2] for m in MALFORMED])
def test_malformed_answers_are_retried_reported_and_never_cached(tmp_path, key_env, request_, body, words):
    with BadServer(body, body) as srv:
        spec = _spec(srv.url, max_retries=1)
        if request_.chat:
            spec = spec.model_copy(update={"chat_template": "auto"})
        cache = ResponseCache(tmp_path / "c.sqlite")
        backend = OpenAIBackend(spec)
        with pytest.raises(MalformedResponseError, match=words) as e:
            CachedBackend(backend, cache).run([request_])
        assert isinstance(e.value, HarnessError) and "\n" not in str(e.value)
        assert "failed after 2 attempts: malformed answer" in str(e.value)
        assert backend.attempts == 2 and srv.sent_bad == 2  # retried, then reported
        key = ResponseCache.key(backend.identity, request_)
        assert cache.get_many([key]) == {}  # never cached
        # The server is fixed: the next run gets a real answer, not a cached empty one.
        [resp] = CachedBackend(OpenAIBackend(spec), cache).run([request_])
        assert resp.texts[0].startswith("echo:")
        assert key in cache.get_many([key])
        cache.close()


def test_one_malformed_answer_then_a_good_one_is_a_success(key_env):
    with BadServer({"choices": [{"index": 0, "message": {"content": None}}]}) as srv:
        backend = OpenAIBackend(_spec(srv.url).model_copy(update={"chat_template": "auto"}))
        [resp] = backend.generate([CHAT])
        assert resp.texts == ["echo:Hi"] and backend.attempts == 2


def test_empty_string_is_a_valid_answer(key_env):
    with BadServer({"choices": [{"index": 0, "text": ""}], **ok_usage}) as srv:
        [resp] = OpenAIBackend(_spec(srv.url)).generate([REQ])
        assert resp.texts == [""] and srv.sent_bad == 1


# ---- the key ------------------------------------------------------------------------------
def test_key_echoed_near_the_cut_is_redacted_whole(key_env):
    backend = OpenAIBackend(_spec("http://127.0.0.1:9/v1"))
    for pad in range(280, 305):
        text = backend._redact("x" * pad + KEY + " tail", KEY)
        assert KEY[:6] not in text and len(text) <= 300


def test_key_echoed_by_the_server_at_the_cut_does_not_leak(key_env):
    with FakeServer() as srv:
        handler = srv.httpd.RequestHandlerClass
        original = handler._send

        def _send(self, code, payload, headers=None):
            # the key straddles the 300-character cut
            original(self, 401, {"error": {"message": "y" * 280 + f" invalid key {KEY}"}}, headers)

        handler._send = _send
        with pytest.raises(RemoteBackendError) as e:
            OpenAIBackend(_spec(srv.url)).generate([REQ])
        assert KEY[:4] not in str(e.value) and "HTTP 401" in str(e.value)


@pytest.mark.parametrize("bad_key", [KEY + "\r", KEY + "\r\n", "sk-a\nb", "sk-\x1b[31m", "sk-ключ"])
def test_key_with_control_characters_is_rejected_without_echo_or_retry(monkeypatch, bad_key):
    monkeypatch.setenv("HARNESS_TEST_KEY", bad_key)
    with FakeServer() as srv:
        backend = OpenAIBackend(_spec(srv.url))
        with pytest.raises(ConfigError, match="HARNESS_TEST_KEY.*control or non-ASCII") as e:
            backend.generate([REQ])
        assert bad_key.strip() not in str(e.value) and "sk-" not in str(e.value)
        assert backend.attempts == 0 and srv.bodies == []  # nothing sent, nothing retried


# ---- the deadline ---------------------------------------------------------------------------
class TrickleServer:
    """Accepts connections and sends a valid 200 answer one byte every `every` seconds
    (`headers_too`: from the first header byte; else the headers at once, then the body)."""

    def __init__(self, headers_too: bool, every: float = 0.1):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.headers_too, self.every = headers_too, every
        self.stop = threading.Event()
        self.connections = 0

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn):
        body = json.dumps({"choices": [{"index": 0, "text": "x" * 200}], **ok_usage}).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
        try:
            conn.recv(65536)
            if not self.headers_too:
                conn.sendall(head)
                head = b""
            for i in range(len(head + body)):
                if self.stop.is_set():
                    break
                conn.sendall((head + body)[i : i + 1])
                time.sleep(self.every)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self):
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_trickling_server_hits_the_total_deadline(key_env, headers_too):
    with TrickleServer(headers_too) as srv:
        backend = OpenAIBackend(_spec(srv.url, timeout_s=2.0, deadline_s=1.0, max_retries=3))
        start = time.monotonic()
        with pytest.raises(RemoteBackendError, match=r"no complete answer within the 1s deadline") as e:
            backend.generate([REQ])
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 2.5, elapsed  # the deadline, not per-read timeouts x retries
        assert "\n" not in str(e.value)


def test_deadline_covers_retries(key_env):
    with FakeServer() as srv:
        srv.script = ["hang"] * 10
        backend = OpenAIBackend(_spec(srv.url, timeout_s=0.4, deadline_s=1.0, max_retries=10, backoff_s=0.0))
        start = time.monotonic()
        with pytest.raises(RemoteBackendError):
            backend.generate([REQ])
        assert time.monotonic() - start < 2.0 and backend.attempts < 10


def test_deadline_default_and_validation():
    from pydantic import ValidationError

    from harness.zoo.specs import OpenAISettings

    assert OpenAISettings().deadline_s == 600.0
    with pytest.raises(ValidationError):
        OpenAISettings(deadline_s=0)
