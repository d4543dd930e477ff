"""Hugging Face transformers backend: greedy/sampled generation, log-likelihoods, hidden states.

Why it looks the way it does:
- Weights load lazily on the first request, so a rerun answered wholly from the response
  cache never touches them; `identity` and `chat_template_hash` need only the files and
  the tokenizer.
- Batches are sorted longest-first and LEFT-padded with explicit position ids, so padding
  changes nothing: a request's answer does not depend on what it was batched with (tests
  compare batched against one-at-a-time).
- Sampled generation runs one request at a time under its own seed, so samples depend only
  on (request, seed), never on batching or order.
- `batch_size="auto"` starts at `max_batch_size` and halves on out-of-memory, remembering
  what worked per request kind.
- An image-text-to-text model (`kind: image-text-to-text`, LLaVA-style) sees the images a
  request carries: the prompt goes through `harness.prompts.encode_vlm_prompt` (the
  processor's chat template with one placeholder per image, expanded to the image's tokens),
  and the rows' `pixel_values` are concatenated in batch order, which is the order the model
  fills the placeholders in. Requests without images on such a model are plain text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, ClassVar

from harness.api.backend import Backend
from harness.backends.gradients import gradient_norms
from harness.backends.hf_generate import Generation
from harness.backends.hf_lens import LogitLensReading
from harness.backends.hf_loglikelihood import LoglikelihoodScoring
from harness.backends.shared_context import forward_accepts, shared_context_default
from harness.errors import HarnessError
from harness.fingerprint import file_sha256, model_identity
from harness.prompts import encode_prompt, encode_prompts, encode_vlm_prompt, with_answer_eos
from harness.api.requests import (
    GenerateRequest,
    GradNormRequest,
    GradNormResponse,
    HiddenStatesRequest,
    HiddenStatesResponse,
    LoglikelihoodRequest,
)
from harness.zoo.load import LoadedModel, load_hf_model, load_processor, load_tokenizer
from harness.zoo.specs import ModelSpec

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


class HFBackend(LoglikelihoodScoring, LogitLensReading, Generation, Backend):
    """A transformers causal LM (optionally with a PEFT adapter) behind the request interface.

    Log-likelihood scoring, the logit lens and generation live in their own modules
    (hf_loglikelihood.py, hf_lens.py, hf_generate.py); here are loading, encoding, batching,
    hidden states and gradient norms."""

    name: ClassVar[str] = "hf"
    serves: ClassVar[frozenset[str]] = frozenset({"generate", "loglikelihood", "hidden_states", "grad_norm", "logit_lens"})

    def __init__(self, spec: ModelSpec, device: str | None = None, batch_size: int | str = "auto",
                 adapter: str | None = None, loaded: LoadedModel | None = None, max_batch_size: int = 64,
                 identity: str | None = None, shared_context: bool | None = None):
        """`loaded` serves an in-memory model (e.g. right after training); then pass `identity`
        too when its weights differ from what `spec`/`adapter` name on disk, or cached answers
        of the on-disk model would be reused for it."""
        if isinstance(batch_size, str) and batch_size != "auto":
            batch_size = int(batch_size)
        self.spec, self.device, self.batch_size, self.max_batch_size = spec, device, batch_size, max_batch_size
        self.adapter = adapter or spec.adapter
        self._loaded = loaded
        self._tokenizer = loaded.tokenizer if loaded is not None else None
        self._processor = loaded.processor if loaded is not None else None
        self._path = loaded.path if loaded is not None else None
        self._identity = identity
        self._auto_size: dict[str, int] = {}
        self._max_len_cache: int | None = None
        self.shared_context = shared_context_default() if shared_context is None else shared_context
        self._packing_ok: bool | None = None  # whether packed scoring agrees on this model (checked once)
        self.calls = 0

    # ---- lazy state -------------------------------------------------------------------
    @property
    def path(self) -> str:
        if self._path is None:
            self._path = self.spec.resolve_path()
        return self._path

    @property
    def identity(self) -> str:
        """Weights + adapter; plus the template override when the spec replaces the tokenizer's
        own (that changes every prompt, so it must change the cache key too)."""
        if self._identity is None:
            ident = model_identity(self.path, self.spec.revision, self.adapter)
            if self.spec.chat_template == "none":
                ident += "+template:none"
            elif self.spec.chat_template != "auto":
                ident += "+template:sha256:" + file_sha256(Path(self.spec.chat_template).expanduser())
            self._identity = ident
        return self._identity

    @property
    def tokenizer(self) -> Any:
        """The tokenizer alone is cheap: prompts can be built without loading weights."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.path, self.spec)
            self._warn_if_template_missing()
        return self._tokenizer

    @property
    def sees_images(self) -> bool:  # type: ignore[override]
        """Only an image-text-to-text model reads the images; a causal LM refuses them (Backend.check_images)."""
        return self.spec.kind == "image-text-to-text"

    @property
    def processor(self) -> Any:
        """The VLM's processor (image preprocessing, placeholders, chat template); loads no weights."""
        if self._processor is None:
            self._processor = self._loaded.processor if self._loaded is not None and self._loaded.processor is not None \
                else load_processor(self.path, self.spec)
        return self._processor

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = load_hf_model(self.spec, self.device, self.adapter)
            self._path = self._loaded.path
            if self._tokenizer is None:
                self._tokenizer = self._loaded.tokenizer
                self._warn_if_template_missing()
        return self._loaded

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def chat_template(self) -> str | None:
        """The template in effect (None when absent or switched off with chat_template: none)."""
        owner = self.tokenizer
        if self.sees_images and self.spec.chat_template == "auto":  # a VLM's template lives in its processor
            owner = self.processor
        t = getattr(owner, "chat_template", None)
        if not t or self.spec.chat_template == "none":
            return None
        return t if isinstance(t, str) else json.dumps(t, sort_keys=True)

    @property
    def chat_template_hash(self) -> str | None:
        t = self.chat_template
        return hashlib.sha256(t.encode()).hexdigest() if t is not None else None

    def _warn_if_template_missing(self) -> None:
        label = f"{self.spec.name} {self._path or self.spec.path}"
        if any(w in label.lower() for w in ("instruct", "chat")) and self.chat_template is None and label not in _WARNED:
            _WARNED.add(label)
            why = "chat_template is 'none'" if self.spec.chat_template == "none" else "the tokenizer has no chat template"
            log.warning("model %r looks like a chat model, but prompts are sent raw (%s)", self.spec.name, why)

    # ---- encoding ---------------------------------------------------------------------
    def encode_prompt(self, request: GenerateRequest | LoglikelihoodRequest | HiddenStatesRequest) -> list[int]:
        """Token ids of the prompt/context: chat-templated when the request and model allow it."""
        return self.encode_with_images(request)[0]

    def encode_with_images(self, request: Any) -> tuple[list[int], Any]:
        """(prompt ids, pixel_values or None): a VLM's prompt with its images' tokens in place."""
        prompt = request.prompt if isinstance(request, GenerateRequest) else request.context
        use_template = request.chat and self.chat_template is not None
        if self.sees_images:
            images = [m.open_image() for m in request.images]
            return encode_vlm_prompt(self.processor, prompt, images, request.system, use_template)
        return encode_prompt(self.tokenizer, prompt, request.system, use_template), None

    def _encode_pair(self, request: LoglikelihoodRequest | HiddenStatesRequest) -> tuple[list[int], int]:
        """(context + continuation ids, continuation length), context cut from the left to fit."""
        seq, n_cont, _, _ = self._encode_pair_pixels(request)
        return seq, n_cont

    def _encode_pair_pixels(self, request: LoglikelihoodRequest | HiddenStatesRequest) -> tuple[list[int], int, Any, int]:
        """`_encode_pair` plus the request's pixel_values (None without images) and how many
        input tokens were cut to fit the model (counted in the response's `truncated`)."""
        return self._encode_pairs([request])[0]

    def _encode_pairs(self, requests: list[Any]) -> list[tuple[list[int], int, Any, int]]:
        """`_encode_pair_pixels` of many requests: each distinct prompt encoded once, and the
        distinct continuations in one batched tokenizer call (the same ids as one at a time;
        the answer's EOS by `harness.prompts.encode_answer`'s rule)."""
        conts = list(dict.fromkeys(r.continuation for r in requests if r.continuation))
        cont_ids = dict(zip(conts, self.tokenizer(conts, add_special_tokens=False)["input_ids"])) if conts else {}
        prompts: dict[tuple, tuple[list[int], Any]] = {}
        if not self.sees_images:  # text prompts: every distinct one tokenized in one call
            keys = list(dict.fromkeys((r.context, r.system, r.chat, r.images) for r in requests))
            use = self.chat_template is not None
            encoded = encode_prompts(self.tokenizer, [(c, s, chat and use) for c, s, chat, _ in keys])
            prompts = {k: (ids, None) for k, ids in zip(keys, encoded)}
        out = []
        for r in requests:
            key = (r.context, r.system, r.chat, r.images)
            if key not in prompts:
                prompts[key] = self.encode_with_images(r)
            ctx, pixels = prompts[key]
            cont = with_answer_eos(self.tokenizer, list(cont_ids.get(r.continuation, [])), getattr(r, "answer_eos", False))
            out.append(self._fit_pair(list(ctx), cont, pixels))
        return out

    def _fit_pair(self, ctx: list[int], cont: list[int], pixels: Any) -> tuple[list[int], int, Any, int]:
        """(context + continuation, continuation length, pixels, tokens cut): the context cut
        from the left to fit."""
        limit = self._max_len()
        n_in = len(ctx) + len(cont)
        if len(cont) >= limit:
            log.warning("continuation of %d tokens exceeds the model's %d; scoring its first %d", len(cont), limit, limit - 1)
            cont = cont[: limit - 1]
        ctx = self._cut(ctx, len(ctx) + len(cont) - limit, pixels)
        return ctx + cont, len(cont), pixels, n_in - len(ctx) - len(cont)

    def _cut(self, ids: list[int], excess: int, pixels: Any) -> list[int]:
        """`ids` without their first `excess` tokens; an image's tokens are never cut (one line instead)."""
        if excess <= 0:
            return ids
        if pixels is not None:
            raise HarnessError(f"a prompt with images is {excess} tokens longer than model {self.spec.name!r} takes; "
                               "cutting it would cut the image's tokens")
        return ids[excess:]

    def _max_len(self) -> int:
        if self._max_len_cache is None:
            config = self.model.config
            config = config.get_text_config() if hasattr(config, "get_text_config") else config
            n = getattr(config, "max_position_embeddings", None)
            tok_max = getattr(self.tokenizer, "model_max_length", None)
            if tok_max and tok_max < 10**7:  # tokenizers without a limit report a huge sentinel
                n = min(n, tok_max) if n else tok_max
            self._max_len_cache = int(n or 2048)
        return self._max_len_cache

    # ---- batching ---------------------------------------------------------------------
    def _pad(self, seqs: list[list[int]]):
        """Left-pad to one width: ids, attention mask and position ids (0 on padding)."""
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        dev = self.loaded.device
        return ids.to(dev), mask.to(dev), pos.to(dev)

    def _forward(self, seqs: list[list[int]], keep: int, hidden: bool = False, pixels: list[Any] | None = None):
        ids, mask, pos = self._pad(seqs)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        kwargs.update(self._pixel_kwargs(pixels))
        if forward_accepts(self.model, "logits_to_keep"):
            kwargs["logits_to_keep"] = keep  # only the last positions: the vocabulary is wide
        out = self.model(**kwargs, output_hidden_states=hidden, use_cache=False)  # scoring: no KV cache to build
        return out, out.logits[:, -keep:].float()

    def _pixel_kwargs(self, pixels: list[Any] | None) -> dict[str, Any]:
        """`pixel_values` of a batch: the rows' images concatenated in row order (rows without none)."""
        import torch

        present = [p for p in (pixels or []) if p is not None]
        if not present:
            return {}
        dtype = next(self.model.parameters()).dtype
        return {"pixel_values": torch.cat(present).to(self.loaded.device, dtype=dtype)}

    def _map_batches(self, kind: str, order: list[int], fn: Callable[[list[int]], list], fixed: int | None = None,
                     weight: Callable[[int], int] | None = None) -> dict[int, Any]:
        """Run `fn` over consecutive chunks of `order`; with batch_size "auto", halve on OOM.
        `weight(i)`: how many requests unit i answers (calls count requests, not units)."""
        import torch
        from rich.progress import Progress

        results: dict[int, Any] = {}
        size = fixed or (self._auto_size.get(kind, self.max_batch_size) if self.batch_size == "auto" else int(self.batch_size))
        quiet = len(order) < 2 * size or not sys.stderr.isatty()
        with Progress(transient=True, disable=quiet) as progress, torch.inference_mode():
            task = progress.add_task(f"{self.name} {kind}", total=len(order))
            start = 0
            while start < len(order):
                chunk = order[start:start + size]
                try:
                    outs, oom = fn(chunk), False
                except RuntimeError as e:  # torch.OutOfMemoryError is a RuntimeError
                    if not (self.batch_size == "auto" and fixed is None and size > 1 and _is_oom(e)):
                        raise
                    oom = True
                if oom:  # retry outside the except block so the failed batch's tensors are freed
                    size = max(1, size // 2)
                    self._auto_size[kind] = size
                    log.info("out of memory in %s; batch size now %d", kind, size)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                if self.batch_size == "auto" and fixed is None:
                    self._auto_size[kind] = size
                results.update(zip(chunk, outs))
                self.calls += sum(map(weight, chunk)) if weight else len(chunk)
                start += len(chunk)
                progress.update(task, advance=len(chunk))
        return results

    # ---- hidden states --------------------------------------------------------------
    def hidden_states(self, requests: list[HiddenStatesRequest]) -> list[HiddenStatesResponse]:
        """Pooled over the continuation tokens (over the whole context when it is empty), or with
        `span="predicting"` over the positions predicting them (last context token through the
        second-to-last continuation token). Rows are left-padded, so both spans are the last
        positions of a row."""
        if not requests:
            return []
        for r in requests:
            if r.pooling not in ("mean", "last", "per_token", "sum"):
                raise HarnessError(f"unknown pooling {r.pooling!r} (mean, last, per_token, sum)")
            if r.span not in ("continuation", "predicting"):
                raise HarnessError(f"unknown span {r.span!r} (continuation, predicting)")
            if any(not 0 <= d <= 1 for d in getattr(r, "depths", ())):
                raise HarnessError(f"hidden-state depths must lie in [0, 1], got {r.depths}")
        encoded = self._encode_pairs(requests)
        for r, (_, nc, _, _) in zip(requests, encoded):
            if r.span == "predicting" and nc == 0:
                raise HarnessError("hidden states with span 'predicting' need a non-empty continuation")
        order = sorted(range(len(requests)), key=lambda i: -len(encoded[i][0]))

        def pool(chunk: list[int]) -> list[HiddenStatesResponse]:
            out_, _ = self._forward([encoded[i][0] for i in chunk], keep=1, hidden=True,
                                    pixels=[encoded[i][2] for i in chunk])
            hs = out_.hidden_states
            out = []
            for r, i in enumerate(chunk):
                req, (seq, nc, _, cut) = requests[i], encoded[i]
                span = nc or len(seq)
                rows = slice(-span, None) if req.span == "continuation" else slice(-nc - 1, -1)
                states: dict[int, list] = {}
                depth_layers = {str(d): round(d * (len(hs) - 1)) for d in getattr(req, "depths", ())}
                for layer in dict.fromkeys([*req.layers, *depth_layers.values()]):
                    if not -len(hs) <= layer < len(hs):
                        raise HarnessError(f"layer {layer} out of range: the model has hidden states 0..{len(hs) - 1}")
                    h = hs[layer][r, rows].float()
                    pooled = (h.mean(0) if req.pooling == "mean" else h.sum(0) if req.pooling == "sum"
                              else h[-1] if req.pooling == "last" else h)
                    states[layer] = pooled.tolist()
                out.append(HiddenStatesResponse(states=states, n_positions=span, truncated=cut,
                                                depth_layers=depth_layers or None))
            return out

        done = self._map_batches("hidden_states", order, pool)
        return [done[i] for i in range(len(requests))]

    # ---- gradient norms (MIA GradNorm) ------------------------------------------------
    def grad_norm(self, requests: list[GradNormRequest]) -> list[GradNormResponse]:
        """GradNorm MIA scores, one unpadded request at a time (harness/backends/gradients.py)."""
        if not requests:  # nothing to ask: do not load the weights
            return []
        bad = sorted({r.p for r in requests if r.p not in (1, 2, float("inf"))})
        if bad:
            raise HarnessError(f"grad_norm: p must be 1, 2 or inf, not {bad[0]!r}")
        if any(r.images for r in requests):
            raise HarnessError("grad_norm does not take images yet (the gradient pass is text-only)")
        seqs = [self._encode_pair(r) for r in requests]
        self.calls += len(requests)
        norms = gradient_norms(self.model, seqs, [r.p for r in requests], self.loaded.device)
        return [GradNormResponse(norm=n) for n in norms]

    # ---- probes -----------------------------------------------------------------------
    def logits_fingerprint(self, prompts: list[str]):
        """Last-position logits (float32, CPU) of raw probe prompts: tells two models apart."""
        import torch

        with torch.inference_mode():
            seqs = [self.encode_prompt(LoglikelihoodRequest(context=p, continuation="", chat=False)) for p in prompts]
            _, logits = self._forward(seqs, keep=1)
        return logits[:, -1].cpu().clone()


def _is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()
