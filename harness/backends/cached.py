"""Any backend behind the response cache: hits are served, only misses reach the model.

Misses are sent and stored in chunks, so an interrupted run keeps what it computed and a
rerun resumes at request granularity. Duplicate requests (several metrics asking the same
question) are sent once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.cache import ResponseCache, cacheable, decode
from harness.api.requests import Request, Response

CHUNK = 256


@dataclass
class CacheCounter:
    hits: int = 0
    misses: int = 0


class CachedBackend:
    def __init__(self, backend, cache: ResponseCache | None):
        self.backend = backend
        self.cache = cache
        self.stats = CacheCounter()

    @property
    def identity(self) -> str:
        return self.backend.identity

    def __getattr__(self, attr: str) -> Any:
        # What the wrapped backend offers besides requests (tokenizer, chat_template_hash, ...).
        if attr.startswith("__") or attr in ("backend", "cache", "stats"):
            raise AttributeError(attr)
        return getattr(self.backend, attr)

    def run(self, requests: list[Request]) -> list[Response]:
        unique = list(dict.fromkeys(requests))
        answers: dict[Request, Response] = {}
        if self.cache is not None:
            # A routed backend keys each kind by the backend that answers it (routing.py).
            identity = {k: self.backend.cache_identity(k) for k in {r.kind for r in unique}}
            keys = {r: ResponseCache.key(identity[r.kind], r) for r in unique if cacheable(r)}
            found = self.cache.get_many(list(keys.values()))
            for r, k in keys.items():
                if k in found:
                    answers[r] = decode(*found[k])
            self.stats.hits += len(answers)
        missing = [r for r in unique if r not in answers]
        self.stats.misses += len(missing)
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            responses = self.backend.run(chunk)
            answers.update(zip(chunk, responses))
            if self.cache is not None:
                self.cache.put_many(
                    [(keys[r], r.kind, resp) for r, resp in zip(chunk, responses) if r in keys]
                )
        return [answers[r] for r in requests]
