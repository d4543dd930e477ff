"""The one place backends are built: routing per request kind, then the response cache.

Everything that asks a model something (a cell's evaluation, a method sampling its own
answers, an attack, a judge model) gets its backend here, so every model call is routed by
the model's spec and answered from the cache when it can be. The factory also remembers the
cached backends it handed out, so a cell's result can report its hits and misses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.backends.cached import CachedBackend
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.api.intervention import Intervention
    from harness.cache import ResponseCache
    from harness.zoo.load import LoadedModel
    from harness.zoo.specs import ModelSpec, ModelZoo


class BackendFactory:
    def __init__(self, cache: "ResponseCache | None" = None, device: str | None = None,
                 batch_size: int | str = "auto", lora_expected: bool = False, zoo: "ModelZoo | None" = None,
                 blobs: Any = None):
        """`lora_expected`: a vLLM engine built for a base model will also serve the methods' adapters.
        `blobs`: the BlobStore generated images go to (None: `<cache>/blobs`)."""
        self.cache, self.device, self.batch_size, self.blobs = cache, device, batch_size, blobs
        self.lora_expected, self.zoo = lora_expected, zoo
        self.used: list[CachedBackend] = []

    def make(self, spec: "ModelSpec", adapter: str | None = None) -> CachedBackend:
        """A model from its spec (+ adapter), routed per request kind, behind the cache."""
        from harness.backends.routing import build_backend

        routed = build_backend(spec, device=self.device, batch_size=self.batch_size, adapter=adapter,
                               lora_expected=self.lora_expected, blobs=self.blobs)
        return self._cached(routed, self.cache)

    def named(self, name: str) -> CachedBackend:
        """A zoo model by name (judge models)."""
        if self.zoo is None:
            raise HarnessError(f"no model zoo to look up {name!r} in")
        return self.make(self.zoo.get(name))

    def in_memory(self, loaded: "LoadedModel", identity: str | None = None, cached: bool = True,
                  batch_size: int | str = "auto") -> CachedBackend:
        """A model already in memory (the base a method trains from, or what it just trained).

        `identity` None: the weights are the on-disk ones its spec names. Weights that exist
        only in memory have no content identity: pass `cached=False`, so nothing is stored
        under a name that could later mean other weights."""
        from harness.backends.hf import HFBackend

        if loaded.spec.kind == "text-to-image":
            from harness.backends.diffusion import DiffusionBackend

            diffusion = DiffusionBackend(loaded.spec, device=loaded.device, loaded=loaded, identity=identity,
                                         blobs=self.blobs)
            return self._cached(diffusion, self.cache if cached else None)
        backend = HFBackend(loaded.spec, device=loaded.device, batch_size=batch_size, loaded=loaded, identity=identity)
        return self._cached(backend, self.cache if cached else None)

    def intervene(self, backend: CachedBackend, intervention: "Intervention") -> CachedBackend:
        """`backend`'s in-process model answering under `intervention` (same cache, own keys)."""
        from harness.backends.intervened import IntervenedBackend

        inner = backend.backend
        inner = getattr(inner, "primary", inner)  # a routed model: its in-process (HF) half
        if not hasattr(inner, "model"):
            raise HarnessError(f"backend {inner.name!r} runs no model in this process; interventions need one (hf)")
        return self._cached(IntervenedBackend(inner, intervention), backend.cache)

    def _cached(self, backend: Any, cache: "ResponseCache | None") -> CachedBackend:
        out = CachedBackend(backend, cache)
        self.used.append(out)
        return out

    def counts(self, since: int = 0) -> tuple[int, int]:
        """(hits, misses) of the backends handed out from position `since` on."""
        used = self.used[since:]
        return sum(b.stats.hits for b in used), sum(b.stats.misses for b in used)
