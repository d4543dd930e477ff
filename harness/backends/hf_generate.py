"""HFBackend's generation: greedy requests batched, sampled ones one at a time under their seed.

Mixed into `harness.backends.hf.HFBackend`, whose encoding, padding and batching it uses;
stop strings and the answer's end are `harness.backends.stopping`'s.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from harness.api.requests import GenerateRequest, GenerateResponse
from harness.backends.stopping import StopCriteria, finish_generation

log = logging.getLogger(__name__)


class Generation:
    """`generate` of HFBackend (see the module docstring)."""

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
