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
- The API key is read from the environment variable the spec names, at request time, and
  is sent only in the Authorization header: it is never part of the cache identity, the
  spec, an error message (redacted) or a result file.
- Chat requests go to /chat/completions (the server applies its chat template); raw ones to
  /completions with the system text prepended as HF does, so a greedy answer from
  `vllm serve` equals the in-process one.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from harness.api.backend import Backend
from harness.errors import ConfigError, HarnessError
from harness.api.requests import (
    GenerateRequest,
    GenerateResponse,
    HiddenStatesRequest,
    HiddenStatesResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from harness.zoo.specs import ModelSpec, OpenAISettings

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class RemoteBackendError(HarnessError):
    """A remote endpoint that refused, failed or timed out (after the configured retries)."""


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
        return key

    def _redact(self, text: str, key: str | None) -> str:
        text = " ".join(str(text).split())[:300]
        return text.replace(key, "***") if key else text

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries: 429/5xx, timeouts and dropped connections back off and retry."""
        import httpx

        s = self.settings
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = f"{safe_url(s.base_url)}/{path}"
        error = ""
        for attempt in range(s.max_retries + 1):
            wait: float | None = None
            with self._lock:
                self.attempts += 1
            try:
                resp = self.client.post(path, json=body, headers=headers)
            except httpx.TimeoutException:
                error = f"timed out after {s.timeout_s:g}s"
            except httpx.TransportError as e:
                error = f"connection failed: {self._redact(e, key)}"
            else:
                if resp.status_code == 200:
                    try:
                        return resp.json()
                    except ValueError as e:
                        raise RemoteBackendError(f"{url} returned a body that is not JSON") from e
                message = self._redact(_error_message(resp), key)
                error = f"HTTP {resp.status_code}: {message}"
                if resp.status_code not in RETRY_STATUS:
                    hint = f" (check ${s.api_key_env})" if resp.status_code in (401, 403) and s.api_key_env else ""
                    raise RemoteBackendError(f"{url} refused the request with {error}{hint}")
                wait = _retry_after(resp)
            if attempt == s.max_retries:
                break
            backoff = s.backoff_s * (2 ** attempt) * self._rng.uniform(0.5, 1.0)
            delay = min(s.max_backoff_s, wait if wait is not None else backoff)
            log.info("%s: %s; retry %d/%d in %.2fs", url, error, attempt + 1, s.max_retries, delay)
            time.sleep(delay)
        raise RemoteBackendError(f"{url} failed after {s.max_retries + 1} attempts: {error}")

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
        if chat:
            msgs = [{"role": "user", "content": request.prompt}]
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
        if request.images:
            raise HarnessError("the openai backend does not send images yet")
        chat = self._use_chat(request)
        data = self._post("chat/completions" if chat else "completions", self._body(request, chat))
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != request.n:
            raise RemoteBackendError(f"{self.identity}: asked for {request.n} samples, got {len(choices)}")
        texts, counts, tops = [], [], []
        for c in choices:
            text = (c.get("message") or {}).get("content") if chat else c.get("text")
            texts.append(text or "")
            tokens, top = _parse_logprobs(c.get("logprobs"), chat, request.top_logprobs)
            if tokens is None:
                usage = data.get("usage") or {}
                if request.n != 1 or "completion_tokens" not in usage:
                    raise RemoteBackendError(f"{self.identity}: the response has neither token logprobs nor usage")
                tokens = int(usage["completion_tokens"])
            if c.get("finish_reason") == "stop" and "stop_reason" in c and c["stop_reason"] is None:
                # vLLM says it stopped on EOS and counted that token; HF counts text tokens only.
                tokens = max(0, tokens - 1)
                top = top[: max(1, tokens)] if top is not None else None
            counts.append(tokens)
            tops.append(top)
        top_lp = None
        if request.top_logprobs > 0:
            if any(t is None for t in tops):
                raise RemoteBackendError(f"{self.identity}: top_logprobs were asked for but not returned")
            top_lp = tops
        with self._lock:
            self.calls += 1
        return GenerateResponse(texts=texts, n_tokens=counts, top_logprobs=top_lp)

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        if not requests:
            return []
        workers = min(self.settings.max_concurrency, len(requests))
        if workers == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai") as pool:
            return list(pool.map(self._one, requests))

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResponse]:
        raise HarnessError("the openai backend cannot score log-likelihoods (route them to hf)")

    def hidden_states(self, requests: list[HiddenStatesRequest]) -> list[HiddenStatesResponse]:
        raise HarnessError("the openai backend cannot return hidden states (route them to hf)")


def _error_message(resp: Any) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text or resp.reason_phrase
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)


def _retry_after(resp: Any) -> float | None:
    value = resp.headers.get("retry-after")
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
