"""HFBackend's logit lens (UnLOK-VQA's white-box attacks, docs/metrics.md §11).

Mixed into `harness.backends.hf.HFBackend`, whose encoding and batching it uses; the ranking
of the per-layer distributions is `harness.representations.logit_lens`'s.
"""

from __future__ import annotations

from typing import Any

from harness.api.requests import LogitLensRequest, LogitLensResponse
from harness.errors import HarnessError


class LogitLensReading:
    """`logit_lens` of HFBackend: final norm + LM head on chosen layers' hidden states."""

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
