"""An OpenAI-compatible HTTP endpoint as a generation backend (remote models and judges).

Works with `vllm serve`, OpenAI itself, or any server speaking the same chat/completions
API. Why it looks the way it does:
- httpx (already a dependency of most of the stack) rather than the `openai` SDK: the retry,
  backoff and timeout policy is ours, explicit and tested against a local server
  (tests/test_openai_backend.py), instead of the SDK's defaults.
- Bounded concurrency: at most `max_concurrency` requests in flight (a thread pool over one
  shared client), so a large evaluation does not flood a rate-limited API.
- Retries with exponential backoff and jitter on 429 and 5xx, on timeouts and on dropped
  connections; a server's `Retry-After` is honoured (capped at `max_backoff_s`). Other 4xx
  errors (a bad key, an unknown model) fail at once: retrying cannot fix them.
- A 200 answer is checked against its request (a JSON object, `n` choices, each with its
  text, log-probs when asked for); a malformed one is retried like a 5xx and, if it persists,
  fails the run: it never reaches the response cache as an empty answer.
- `timeout_s` bounds each read; `deadline_s` bounds the whole request, retries included, so
  a server that trickles bytes cannot hang a run (harness/backends/deadline.py).
- The API key is read from the environment variable the spec names, at request time, and
  is sent only in the Authorization header: it is never part of the cache identity, the
  spec, an error message (redacted) or a result file.
- Chat requests go to /chat/completions (the server applies its chat template); raw ones to
  /completions with the system text prepended as HF does, so a greedy answer from
  `vllm serve` equals the in-process one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from harness.api.backend import Backend
from harness.backends.deadline import Deadline, DeadlineExceeded
from harness.errors import ConfigError, HarnessError
from harness.api.requests import (
    GenerateRequest,
    GenerateResponse,
)
from harness.zoo.specs import ModelSpec, OpenAISettings

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class RemoteBackendError(HarnessError):
    """A remote endpoint that refused, failed or timed out (after the configured retries)."""


class MalformedResponseError(RemoteBackendError):
    """A 200 answer that does not answer the request (no text, wrong count, not JSON, ...)."""


class _Malformed(Exception):
    """Raised while reading a 200 answer; retried, then reported as MalformedResponseError."""


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe to store in a cache key or result."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


class OpenAIBackend(Backend):
    """Generation (texts, token counts, top logprobs) through an OpenAI-compatible API."""

    name: ClassVar[str] = "openai"
    serves: ClassVar[frozenset[str]] = frozenset({"generate"})

    @property
    def sees_images(self) -> bool:  # type: ignore[override]
        """The served model reads images when its spec says it is an image-text-to-text model."""
        return self.spec.kind == "image-text-to-text"

    def __init__(self, spec: ModelSpec, settings: OpenAISettings | None = None, transport: Any = None):
        """`transport` is an httpx transport for tests; normally None."""
        self.spec = spec
        settings = settings or spec.openai
        if settings is None:
            raise ConfigError(f"model {spec.name!r}: the openai backend needs an `openai:` section in its spec")
        self.settings = settings
        self.model = settings.model or spec.path or spec.name
        self._transport = transport
        self._client: Any = None
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.calls = 0
        self.attempts = 0  # HTTP requests sent, retries included

    # ---- identity ---------------------------------------------------------------------
    @property
    def identity(self) -> str:
        """Endpoint + served model name: what a cached answer is an answer of. Never the key."""
        return self.settings.identity or f"openai:{safe_url(self.settings.base_url)}#{self.model}"

    def cache_identity(self, kind: str) -> str:
        return self.identity

    chat_template_hash = None  # the server applies its own template; we cannot see it

    # ---- HTTP -------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    import httpx
                except ImportError as e:  # pragma: no cover - httpx is a core dependency
                    raise HarnessError("the openai backend needs httpx: pip install httpx") from e
                limits = httpx.Limits(max_connections=self.settings.max_concurrency)
                self._client = httpx.Client(base_url=self.settings.base_url, timeout=self.settings.timeout_s,
                                            limits=limits, transport=self._transport)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _api_key(self) -> str | None:
        env = self.settings.api_key_env
        if not env:
            return None
        key = os.environ.get(env)
        if not key:
            raise ConfigError(f"model {self.spec.name!r}: environment variable {env} (its API key) is not set")
        if not key.isascii() or not key.isprintable():
            # A CRLF .env file leaves a \r in the key; never echo it (it is the secret).
            raise ConfigError(f"model {self.spec.name!r}: environment variable {env} (its API key) contains a "
                              "control or non-ASCII character (a line end from a CRLF .env file?); remove it")
        return key

    def _redact(self, text: object, key: str | None) -> str:
        """One line of at most 300 characters without the key (replaced before cutting, so a
        key near the cut cannot leave its prefix behind)."""
        text = str(text)
        if key:
            text = text.replace(key, "***")
        return " ".join(text.split())[:300]

    def _send(self, path: str, body: dict[str, Any], headers: dict[str, str],
              deadline: float) -> tuple[int, bytes, Any, str]:
        """One HTTP exchange: (status, body bytes, headers, reason), or DeadlineExceeded."""
        import httpx

        with Deadline(deadline) as dl:
            timeout = min(self.settings.timeout_s, max(0.001, dl.remaining()))
            try:
                with self.client.stream("POST", path, json=body, headers=headers, timeout=timeout,
                                        extensions={"trace": dl.trace}) as resp:
                    data = dl.read_body(resp)
                    return resp.status_code, data, resp.headers, resp.reason_phrase
            except httpx.TransportError:
                if dl.fired or dl.remaining() <= 0.01:
                    raise DeadlineExceeded from None
                raise

    def _post(self, path: str, body: dict[str, Any], parse: Any = None) -> Any:
        """POST with retries: 429/5xx, timeouts, dropped connections and malformed 200 answers
        (`parse` raises _Malformed) back off and retry, all within `deadline_s`."""
        import httpx

        s = self.settings
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = f"{safe_url(s.base_url)}/{path}"
        error = ""
        malformed = False
        deadline = time.monotonic() + s.deadline_s
        for attempt in range(s.max_retries + 1):
            wait: float | None = None
            malformed = False
            with self._lock:
                self.attempts += 1
            try:
                status, data, resp_headers, reason = self._send(path, body, headers, deadline)
            except DeadlineExceeded:
                raise RemoteBackendError(f"{url} gave no complete answer within the {s.deadline_s:g}s deadline "
                                         f"(deadline_s; {attempt + 1} attempts)") from None
            except httpx.TimeoutException:
                error = f"timed out after {s.timeout_s:g}s"
            except httpx.TransportError as e:
                error = f"connection failed: {self._redact(e, key)}"
            else:
                if status == 200:
                    try:
                        try:
                            payload = json.loads(data)
                        except ValueError:
                            raise _Malformed("the body is not JSON") from None
                        return parse(payload) if parse is not None else payload
                    except _Malformed as e:
                        malformed = True
                        error = f"malformed answer: {self._redact(e, key)}"
                else:
                    message = self._redact(_error_message(data, reason), key)
                    error = f"HTTP {status}: {message}"
                    if status not in RETRY_STATUS:
                        hint = f" (check ${s.api_key_env})" if status in (401, 403) and s.api_key_env else ""
                        raise RemoteBackendError(f"{url} refused the request with {error}{hint}")
                    wait = _retry_after(resp_headers)
            remaining = deadline - time.monotonic()
            if attempt == s.max_retries or remaining <= 0:
                break
            backoff = s.backoff_s * (2 ** attempt) * self._rng.uniform(0.5, 1.0)
            delay = min(s.max_backoff_s, remaining, wait if wait is not None else backoff)
            log.info("%s: %s; retry %d/%d in %.2fs", url, error, attempt + 1, s.max_retries, delay)
            time.sleep(delay)
        cls = MalformedResponseError if malformed else RemoteBackendError
        raise cls(f"{url} failed after {attempt + 1} attempts: {error}")

    # ---- requests ---------------------------------------------------------------------
    def _use_chat(self, request: GenerateRequest) -> bool:
        endpoint = self.settings.endpoint
        if endpoint != "auto":
            return endpoint == "chat"
        return request.chat and self.spec.chat_template != "none"

    def _body(self, request: GenerateRequest, chat: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "n": request.n,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = [s for s in request.stop if s]
        want_tokens = request.top_logprobs > 0 or request.n > 1  # per-sample token counts
        if request.images and not chat:
            raise HarnessError(f"{self.identity}: images need the chat endpoint (endpoint: chat); "
                               "the completions endpoint takes text only")
        if chat:
            content: Any = request.prompt
            if request.images:  # OpenAI image content parts, the pictures inline as data URLs
                content = [*({"type": "image_url", "image_url": {"url": _data_url(ref)}} for ref in request.images),
                           {"type": "text", "text": request.prompt}]
            msgs = [{"role": "user", "content": content}]
            if request.system:
                msgs.insert(0, {"role": "system", "content": request.system})
            body["messages"] = msgs
            if want_tokens:
                body["logprobs"] = True
                body["top_logprobs"] = request.top_logprobs
        else:
            body["prompt"] = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
            if want_tokens:
                body["logprobs"] = request.top_logprobs
        return body

    def _one(self, request: GenerateRequest) -> GenerateResponse:
        chat = self._use_chat(request)
        response = self._post("chat/completions" if chat else "completions", self._body(request, chat),
                              parse=lambda data: _read_answer(data, request, chat))
        with self._lock:
            self.calls += 1
        return response

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        if not requests:
            return []
        workers = min(self.settings.max_concurrency, len(requests))
        if workers == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai") as pool:
            return list(pool.map(self._one, requests))




def _read_answer(data: Any, request: GenerateRequest, chat: bool) -> GenerateResponse:
    """The response to `request` in a 200 body, or _Malformed: exactly `n` choices, each with
    its text (a string; "" is a valid answer, null or absent is not), and token counts and
    top log-probs where they were asked for."""
    if not isinstance(data, dict):
        raise _Malformed(f"the body is a JSON {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise _Malformed("`choices` is not a list of objects")
    if len(choices) != request.n:
        raise _Malformed(f"asked for {request.n} samples, got {len(choices)}")
    indexes = [c.get("index", i) for i, c in enumerate(choices)]
    if sorted(i if type(i) is int else -1 for i in indexes) != list(range(request.n)):
        raise _Malformed(f"choice indexes {indexes} are not 0..{request.n - 1}")
    choices = [c for _, c in sorted(zip(indexes, choices), key=lambda ic: ic[0])]
    usage = data.get("usage")
    texts, counts, tops = [], [], []
    for i, c in enumerate(choices):
        if chat:
            message = c.get("message")
            text = message.get("content") if isinstance(message, dict) else None
        else:
            text = c.get("text")
        if not isinstance(text, str):
            got = "null" if text is None else type(text).__name__
            raise _Malformed(f"choice {i} has no {'message.content' if chat else 'text'} (got {got})")
        texts.append(text)
        try:
            tokens, top = _parse_logprobs(c.get("logprobs"), chat, request.top_logprobs)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise _Malformed(f"choice {i} has unreadable logprobs") from None
        if tokens is None:
            if request.n != 1 or not isinstance(usage, dict) or type(usage.get("completion_tokens")) is not int:
                raise _Malformed("the response has neither token logprobs nor usage.completion_tokens")
            tokens = usage["completion_tokens"]
        if c.get("finish_reason") == "stop" and "stop_reason" in c and c["stop_reason"] is None:
            # vLLM says it stopped on EOS and counted that token; HF counts text tokens only.
            tokens = max(0, tokens - 1)
            top = top[: max(1, tokens)] if top is not None else None
        counts.append(tokens)
        tops.append(top)
    top_lp = None
    if request.top_logprobs > 0:
        if any(t is None for t in tops):
            raise _Malformed("top_logprobs were asked for but not returned")
        top_lp = tops
    return GenerateResponse(texts=texts, n_tokens=counts, top_logprobs=top_lp)


def _error_message(data: bytes, reason: str) -> str:
    try:
        payload = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace") or reason
    err = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _parse_logprobs(lp: dict | None, chat: bool, k: int) -> tuple[int | None, list[dict[str, float]] | None]:
    """(number of generated tokens, per-position {token: logprob} of the k likeliest) or Nones.

    Servers may add the sampled token to the top-k (vLLM does): keep the k likeliest. Like the
    HF backend, the first position is kept for an empty completion (a judge reads it).
    """
    if not lp:
        return None, None
    if chat:
        content = lp.get("content") or []
        n = len(content)
        steps = [{e["token"]: float(e["logprob"]) for e in (c.get("top_logprobs") or [])} for c in content]
    else:
        n = len(lp.get("tokens") or [])
        steps = [{t: float(v) for t, v in (d or {}).items()} for d in (lp.get("top_logprobs") or [])]
    if k <= 0:
        return n, None
    top = [dict(sorted(s.items(), key=lambda kv: -kv[1])[:k]) for s in steps]
    return n, top[: max(1, n)]


def _data_url(ref: Any) -> str:
    """A picture as a `data:` URL (what OpenAI-compatible servers take as an image part)."""
    import base64

    return f"data:{ref.mime};base64,{base64.b64encode(ref.read_bytes()).decode('ascii')}"
