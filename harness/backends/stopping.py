"""Where a generated completion ends: its own token budget, EOS, or the first stop string.

Batched greedy generation runs every row to the batch's longest budget; these cut each
row back to what it alone would have produced.
"""

from __future__ import annotations

from typing import Any

from harness.api.requests import GenerateRequest


def finish_generation(tok: Any, gen: list[int], req: GenerateRequest, eos_ids: set[int]) -> tuple[str, int]:
    """Cut a generated row at its own budget, EOS and first stop string: (text, tokens kept)."""
    gen = gen[: req.max_new_tokens]
    end = next((k for k, t in enumerate(gen) if t in eos_ids), len(gen))
    gen = gen[:end]
    text = tok.decode(gen, skip_special_tokens=True)
    cuts = [text.find(s) for s in req.stop if s and s in text]
    if not cuts:
        return text, len(gen)
    text = text[: min(cuts)]
    kept = next(k for k in range(len(gen) + 1) if tok.decode(gen[:k], skip_special_tokens=True).startswith(text))
    return text, kept


class StopCriteria:
    """Per-row done flags: own token budget reached, EOS produced, or a stop string seen.

    Ending rows early is only an optimisation; `finish_generation` cuts the text either way.
    """

    def __init__(self, tok: Any, start: int, rows: list[GenerateRequest], eos_ids: set[int]):
        self.tok, self.start, self.rows, self.eos_ids = tok, start, rows, eos_ids
        # A finished row stays finished inside `generate`, so only a recent tail needs decoding.
        self.tail = 8 + 4 * max((len(s) for r in rows for s in r.stop), default=0)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = []
        for r, req in enumerate(self.rows):
            n = input_ids.shape[1] - self.start
            flag = n >= req.max_new_tokens or (n > 0 and int(input_ids[r, -1]) in self.eos_ids)
            if not flag and req.stop:
                text = self.tok.decode(input_ids[r, max(self.start, input_ids.shape[1] - self.tail):].tolist(),
                                       skip_special_tokens=True)
                flag = any(s and s in text for s in req.stop)
            done.append(flag)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
