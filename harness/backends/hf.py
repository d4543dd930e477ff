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

import dataclasses
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, ClassVar

from harness.api.backend import Backend
from harness.backends.gradients import gradient_norms
from harness.backends.shared_context import (continuation_logits, forward_accepts, group_by_context, packable,
                                            packed_logits, shared_context_default)
from harness.backends.stopping import StopCriteria, finish_generation
from harness.backends.token_stats import gc_paused, token_stats_many
from harness.errors import HarnessError
from harness.fingerprint import file_sha256, model_identity
from harness.prompts import encode_prompt, encode_prompts, encode_vlm_prompt, with_answer_eos
from harness.api.requests import (
    GenerateRequest,
    GenerateResponse,
    GradNormRequest,
    GradNormResponse,
    HiddenStatesRequest,
    HiddenStatesResponse,
    LogitLensRequest,
    LogitLensResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from harness.zoo.load import LoadedModel, load_hf_model, load_processor, load_tokenizer
from harness.zoo.specs import ModelSpec

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


class HFBackend(Backend):
    """A transformers causal LM (optionally with a PEFT adapter) behind the request interface."""

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

    # ---- loglikelihood and hidden states ----------------------------------------------
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResponse]:
        """Per-token log-probabilities of each continuation. Text requests that share a context
        are scored with the context forwarded once (harness/backends/shared_context.py); the
        rest, and every request with images, one full sequence per row."""
        if not requests:  # nothing to ask: do not load the weights
            return []
        with gc_paused():
            return self._loglikelihood(requests)

    def _loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResponse]:
        encoded = self._encode_pairs(requests)
        done: dict[int, LoglikelihoodResponse] = {}
        if self.shared_context:
            pairs = [(seq, nc) for seq, nc, *_ in encoded]
            text = lambda i: encoded[i][2] is None  # noqa: E731 - image prompts are not grouped
            packed = [g for g in group_by_context(pairs, text, min_saving=0.0)
                      if packable(*self._split_group(encoded, g))]
            if packed and self._packing_ok is None:
                self._packing_ok, checked = self._packing_agrees(requests, encoded, packed[0])
                if self._packing_ok:  # the checked group's packed answers stand
                    done.update(checked)
                    packed = packed[1:]
            done.update(self._score_packed(requests, encoded, packed if self._packing_ok else []))
            done.update(self._score_shared(requests, encoded,
                                           group_by_context(pairs, lambda i: text(i) and i not in done)))
        order = sorted((i for i in range(len(requests)) if i not in done), key=lambda i: -len(encoded[i][0]))
        done.update(self._map_batches("loglikelihood", order, lambda chunk: self._score_rows(requests, encoded, chunk)))
        return [done[i] for i in range(len(requests))]

    def _score_rows(self, requests: list[LoglikelihoodRequest], encoded: list[tuple[list[int], int, Any, int]],
                    chunk: list[int]) -> list[LoglikelihoodResponse]:
        """The one-sequence-per-row path: context + continuation forwarded for each request."""
        keep = max(encoded[i][1] for i in chunk) + 1
        _, logits = self._forward([encoded[i][0] for i in chunk], keep, pixels=[encoded[i][2] for i in chunk])
        rows = [range(r * keep + keep - 1 - encoded[i][1], r * keep + keep - 1) for r, i in enumerate(chunk)]  # predicting it
        return token_stats_many(logits.reshape(-1, logits.shape[-1]), rows,
                                [encoded[i][0][len(encoded[i][0]) - encoded[i][1]:] for i in chunk],
                                [requests[i].moments for i in chunk], [encoded[i][3] for i in chunk])

    @staticmethod
    def _split_group(encoded: list[tuple[list[int], int, Any, int]], group: list[int]) -> tuple[list[int], list[list[int]]]:
        """(the group's shared context, each member's continuation)."""
        seq, nc = encoded[group[0]][0], encoded[group[0]][1]
        return seq[: len(seq) - nc], [encoded[i][0][len(encoded[i][0]) - encoded[i][1]:] for i in group]

    def _score_packed(self, requests: list[LoglikelihoodRequest], encoded: list[tuple[list[int], int, Any, int]],
                      groups: list[list[int]]) -> dict[int, LoglikelihoodResponse]:
        """Responses of the groups scored packed: one row per group (shared_context.packed_logits)."""
        if not groups:
            return {}
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        order = sorted(range(len(groups)), key=lambda g: -sum(len(encoded[i][0]) for i in groups[g]))

        def score(chunk: list[int]) -> list[dict[int, LoglikelihoodResponse]]:
            split = [self._split_group(encoded, groups[g]) for g in chunk]
            logits, rows = packed_logits(self.model, pad_id, self.loaded.device, [c for c, _ in split],
                                         [cs for _, cs in split])
            members = [i for g in chunk for i in groups[g]]
            stats = iter(token_stats_many(logits, [r for rs in rows for r in rs], [c for _, cs in split for c in cs],
                                          [requests[i].moments for i in members], [encoded[i][3] for i in members]))
            return [{i: next(stats) for i in groups[g]} for g in chunk]

        out: dict[int, LoglikelihoodResponse] = {}
        for responses in self._map_batches("loglikelihood_packed", order, score, weight=lambda g: len(groups[g])).values():
            out.update(responses)
        return out

    def _packing_agrees(self, requests: list[LoglikelihoodRequest], encoded: list[tuple[list[int], int, Any, int]],
                        group: list[int]) -> tuple[bool, dict[int, LoglikelihoodResponse]]:
        """Whether this model honours a custom 4D attention mask: one group scored packed and one
        row per request agree (log-probs within 1e-4, same greedy flags), and the group's packed
        answers. Checked once per backend; a model that does not is scored by the other paths,
        with one warning."""
        import torch

        with torch.inference_mode():
            packed = self._score_packed(requests, encoded, [group])
            plain = self._score_rows(requests, encoded, group)  # unbatched: not counted in `calls`
        ok = all(len(packed[i].token_logprobs) == len(p.token_logprobs) and packed[i].token_greedy == p.token_greedy
                 and all(abs(a - b) <= 1e-4 for a, b in zip(packed[i].token_logprobs, p.token_logprobs))
                 for i, p in zip(group, plain))
        if not ok:
            log.warning("model %r gives other log-likelihoods with a packed attention mask; scoring shared contexts "
                        "with the KV cache instead", self.spec.name)
            self.calls -= len(group)  # its packed answers are dropped: `calls` counts requests answered
        return ok, packed

    def _score_shared(self, requests: list[LoglikelihoodRequest], encoded: list[tuple[list[int], int, Any, int]],
                      groups: list[list[int]]) -> dict[int, LoglikelihoodResponse]:
        """Responses of the grouped requests: batches of contexts, each forwarded once."""
        if not groups:
            return {}
        order = sorted(range(len(groups)), key=lambda g: -len(encoded[groups[g][0]][0]))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        def split(i: int) -> tuple[list[int], list[int]]:
            seq, nc = encoded[i][0], encoded[i][1]
            return seq[: len(seq) - nc], seq[len(seq) - nc:]

        def score(chunk: list[int]) -> list[dict[int, LoglikelihoodResponse]]:
            members = [(k, g, i) for k, g in enumerate(chunk) for i in groups[g]]
            contexts = [split(groups[g][0])[0] for g in chunk]  # a group's members share it
            conts = [split(i)[1] for _, _, i in members]
            logits, rows = continuation_logits(self.model, self._pad, pad_id, contexts, conts,
                                               [k for k, _, _ in members])
            by_group: dict[int, dict[int, LoglikelihoodResponse]] = {g: {} for g in chunk}
            stats = token_stats_many(logits, rows, conts, [requests[i].moments for _, _, i in members],
                                     [encoded[i][3] for _, _, i in members])
            for (_, g, i), response in zip(members, stats):
                by_group[g][i] = response
            return [by_group[g] for g in chunk]

        out: dict[int, LoglikelihoodResponse] = {}
        for responses in self._map_batches("loglikelihood_shared", order, score, weight=lambda g: len(groups[g])).values():
            out.update(responses)
        return out

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

    # ---- logit lens (UnLOK-VQA white-box attacks, docs/metrics.md §11) -----------------
    def logit_lens(self, requests: list[LogitLensRequest]) -> list[LogitLensResponse]:
        """Final norm + LM head on the chosen layers' hidden states at the prompt's last position.

        The last hidden state's lens is the model's own next-token distribution (its logits:
        HF returns that state already normed, so norm + head again would norm it twice); the
        others get norm, then head. The distributions (or their differences, `order`) are ranked
        by harness.representations.logit_lens."""
        if not requests:
            return []
        import numpy as np

        from harness.representations import logit_lens as lens

        for r in requests:
            if r.top_k < 1 or r.bottom_k < 0:
                raise HarnessError(f"logit_lens: top_k must be >= 1 and bottom_k >= 0, not {r.top_k}, {r.bottom_k}")
            if r.order not in lens.ORDERS or len(r.layers) <= r.order:
                raise HarnessError(f"logit_lens: order {r.order!r} needs order 0, 1 or 2 and more than that many layers "
                                   f"(got {len(r.layers)})")
        limit = self._max_len()
        encoded = [self.encode_with_images(r) for r in requests]
        prompts = [self._cut(ids, len(ids) - limit, px) for ids, px in encoded]
        targets = [self._target_ids(r) for r in requests]
        norm, head = self._lens_modules()
        order = sorted(range(len(requests)), key=lambda i: -len(prompts[i]))

        def read(chunk: list[int]) -> list[LogitLensResponse]:
            out_, logits = self._forward([prompts[i] for i in chunk], keep=1, hidden=True,
                                         pixels=[encoded[i][1] for i in chunk])
            out = []
            for row, i in enumerate(chunk):
                req = requests[i]
                layer_logits = lens.lens_logits(out_.hidden_states, logits, row, -1, req.layers, norm, head)
                probs = layer_logits.softmax(-1).cpu().numpy().astype(np.float64)
                values = lens.differences(probs, req.order)
                ids, top = lens.top_k(values, req.top_k)
                keys = list(req.layers)[req.order:]
                tids = targets[i]
                resp = LogitLensResponse(
                    top_ids={k: ids[n].tolist() for n, k in enumerate(keys)},
                    top_values={k: top[n].tolist() for n, k in enumerate(keys)},
                    target_ids=list(tids),
                    target_values={k: [float(values[n, t]) for t in tids] for n, k in enumerate(keys)})
                if req.bottom_k:
                    bids, bottom = lens.bottom_k(values, req.bottom_k)
                    resp.bottom_ids = {k: bids[n].tolist() for n, k in enumerate(keys)}
                    resp.bottom_values = {k: bottom[n].tolist() for n, k in enumerate(keys)}
                out.append(resp)
            return out

        done = self._map_batches("logit_lens", order, read)
        return [done[i] for i in range(len(requests))]

    def _target_ids(self, request: LogitLensRequest) -> list[int]:
        """The request's targets as token ids: ids as given, then each text's first token
        (tokenised as a continuation is, without special tokens)."""
        ids = [int(t) for t in request.target_ids]
        if request.targets:
            for text, toks in zip(request.targets, self.tokenizer(list(request.targets), add_special_tokens=False)["input_ids"]):
                if not toks:
                    raise HarnessError(f"logit_lens: target {text!r} has no tokens")
                ids.append(int(toks[0]))
        vocab = self._lens_modules()[1].weight.shape[0]
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise HarnessError(f"logit_lens: target id {bad[0]} is outside the vocabulary (0..{vocab - 1})")
        return ids

    def _lens_modules(self) -> tuple[Any, Any]:
        """(final norm, LM head) of the model; a VLM's are its language model's."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        head = base.get_output_embeddings()
        decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
        norm = next((getattr(decoder, n) for n in ("norm", "final_layernorm", "ln_f", "final_layer_norm")
                     if callable(getattr(decoder, n, None))), None)
        if head is None or norm is None:
            raise HarnessError(f"logit_lens: cannot find the final norm and LM head of model {self.spec.name!r} "
                               f"({type(base).__name__})")
        return norm, head

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

    # ---- generation -------------------------------------------------------------------
    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        """Greedy requests batched (answers identical to one-at-a-time); sampled ones singly, seeded."""
        if not requests:
            return []
        limit = self._max_len()
        encoded = [self.encode_with_images(r) for r in requests]
        prompts = [self._cut(ids, len(ids) - max(1, limit - r.max_new_tokens), px) for (ids, px), r in zip(encoded, requests)]
        cuts = [len(ids) - len(p) for (ids, _), p in zip(encoded, prompts)]
        if any(cuts):
            log.warning("%d prompts longer than the model's %d tokens (less max_new_tokens); their start was cut",
                        sum(1 for c in cuts if c), limit)
        pixels = [px for _, px in encoded]
        greedy = sorted((i for i, r in enumerate(requests) if not r.sampled), key=lambda i: -len(prompts[i]))
        sampled = [i for i, r in enumerate(requests) if r.sampled]
        done = self._map_batches("generate", greedy, lambda c: self._generate(
            [requests[i] for i in c], [prompts[i] for i in c], [pixels[i] for i in c]))
        done.update(self._map_batches("sample", sampled, lambda c: self._generate(
            [requests[c[0]]], [prompts[c[0]]], [pixels[c[0]]]), fixed=1))
        for i, c in enumerate(cuts):
            if c:
                done[i] = dataclasses.replace(done[i], truncated=c)
        return [done[i] for i in range(len(requests))]

    def _generate(self, reqs: list[GenerateRequest], prompts: list[list[int]],
                  pixels: list[Any] | None = None) -> list[GenerateResponse]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        tok, model = self.tokenizer, self.model
        ids, mask, _ = self._pad(prompts)  # generate derives position ids from the mask
        base_gc = getattr(model, "generation_config", None)
        eos = getattr(base_gc, "eos_token_id", None) or tok.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos_ids), 0)
        # A fresh config: the checkpoint's own sampling defaults (top_k, repetition_penalty,
        # ...) would make answers depend on more than the request.
        gc = GenerationConfig(max_new_tokens=max(r.max_new_tokens for r in reqs), eos_token_id=sorted(eos_ids) or None,
                              pad_token_id=pad, bos_token_id=tok.bos_token_id)
        sample = reqs[0].sampled
        if sample:
            r = reqs[0]
            gc.update(do_sample=True, temperature=r.temperature, top_p=r.top_p, top_k=0, num_return_sequences=r.n)
            torch.manual_seed(r.seed if r.seed is not None else 0)
        else:
            gc.update(do_sample=False)
        per_row = reqs[0].n if sample else 1
        stopper = StopCriteria(tok, ids.shape[1], [r for r in reqs for _ in range(per_row)], eos_ids)
        want_top = max(r.top_logprobs for r in reqs)
        gc.update(return_dict_in_generate=True, output_logits=want_top > 0)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gc,
                             stopping_criteria=StoppingCriteriaList([stopper]), **self._pixel_kwargs(pixels))
        rows = out.sequences[:, ids.shape[1]:].tolist()
        responses = []
        for k, r in enumerate(reqs):
            texts, counts = zip(*(finish_generation(tok, rows[k * per_row + j], r, eos_ids) for j in range(per_row)))
            n = 1 if sample else r.n  # greedy: n identical samples
            top = None
            if r.top_logprobs > 0:
                top = [self._top_logprobs(out.logits, k * per_row + j, counts[j], r.top_logprobs) for j in range(per_row)]
                top = top * n
            responses.append(GenerateResponse(texts=list(texts) * n, n_tokens=list(counts) * n, top_logprobs=top))
        return responses

    def _top_logprobs(self, logits, row: int, n_kept: int, k: int) -> list[dict[str, float]]:
        """{token text: log-prob} of the k most likely tokens at each kept position of one row.

        Raw (unprocessed) logits, so the distribution is the model's own, not the sampler's;
        the first position is kept even for an empty completion (a judge reads it).
        """
        steps = []
        for step in logits[: max(1, n_kept)]:
            lp = step[row].float().log_softmax(-1)
            values, ids = lp.topk(min(k, lp.shape[-1]))
            entry: dict[str, float] = {}
            for v, i in zip(values.tolist(), ids.tolist()):
                text = self.tokenizer.decode([i])
                entry.setdefault(text, v)  # two ids can decode alike: keep the likelier
            steps.append(entry)
        return steps

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
