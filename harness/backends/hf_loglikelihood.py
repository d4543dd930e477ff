"""HFBackend's log-likelihood scoring: which path each request takes, and each path.

Mixed into `harness.backends.hf.HFBackend`, whose encoding (`_encode_pairs`), padding, forward
pass and batching (`_map_batches`) it uses. Three paths, all ending in `token_stats_many`:
- packed: the continuations of one context in one row, the context forwarded once
  (`shared_context.packed_logits`), where the model honours a custom 4D mask (checked once);
- KV cache: longer groups, the context forwarded once with its cache (`continuation_logits`);
- rows: everything else, and every request with images, one full sequence per row.
"""

from __future__ import annotations

import logging
from typing import Any

from harness.api.requests import LoglikelihoodRequest, LoglikelihoodResponse
from harness.backends.shared_context import continuation_logits, group_by_context, packable, packed_logits
from harness.backends.token_stats import gc_paused, token_stats_many

log = logging.getLogger(__name__)


class LoglikelihoodScoring:
    """`loglikelihood` of HFBackend (see the module docstring)."""

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

        def score(chunk: list[int]) -> list[dict[int, LoglikelihoodResponse]]:
            split = [self._split_group(encoded, groups[g]) for g in chunk]
            members = [i for g in chunk for i in groups[g]]
            conts = [c for _, cs in split for c in cs]
            owner = [k for k, g in enumerate(chunk) for _ in groups[g]]  # each continuation's context
            logits, rows = continuation_logits(self.model, self._pad, pad_id, [c for c, _ in split], conts, owner)
            stats = iter(token_stats_many(logits, rows, conts, [requests[i].moments for i in members],
                                          [encoded[i][3] for i in members]))
            return [{i: next(stats) for i in groups[g]} for g in chunk]

        out: dict[int, LoglikelihoodResponse] = {}
        for responses in self._map_batches("loglikelihood_shared", order, score, weight=lambda g: len(groups[g])).values():
            out.update(responses)
        return out
