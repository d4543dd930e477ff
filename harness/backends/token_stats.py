"""Per-token statistics of scored continuations, from the logits that predict them.

The last step of log-likelihood scoring (harness/backends/hf_loglikelihood.py, every path):
log-probabilities, greedy flags, and on request the vocabulary mean and spread Min-k%++ needs.
Many continuations are scored together, and the collector is paused meanwhile (`gc_paused`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from harness.api.requests import LoglikelihoodResponse


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration (as it was before, afterwards).

    Scoring makes thousands of small acyclic objects (token lists, responses), which reference
    counting frees; each of them also counts towards the collector's next full pass over every
    object the process holds (a run keeps its earlier results), measured at about a fifth of
    the scoring time of 2,100 requests (docs/benchmarks.md)."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def token_stats_many(logits: Any, rows: Sequence[Sequence[int]], targets: list[list[int]], moments: list[bool],
                     truncated: list[int]) -> list[LoglikelihoodResponse]:
    """`token_stats` of many continuations at once. `logits` is [N, vocab]; `rows[k]` lists, in
    order, the rows of it that predict continuation k's tokens (a shared context's last row may
    serve many continuations). Those without `moments` are scored together: their rows read a
    few at a time (`_logprobs_and_greedy`), never gathered into a copy of all of them."""
    import torch

    out: list[LoglikelihoodResponse | None] = [None] * len(rows)
    plain = [k for k in range(len(rows)) if not moments[k] and targets[k]]
    chosen = set(plain)
    for k in range(len(rows)):
        if k not in chosen:
            block = logits[torch.tensor(rows[k], dtype=torch.long, device=logits.device)]
            out[k] = token_stats(block, targets[k], moments[k], truncated[k])
    if plain:
        idx = torch.tensor([r for k in plain for r in rows[k]], dtype=torch.long, device=logits.device)
        tgt = torch.tensor([t for k in plain for t in targets[k]], dtype=torch.long, device=logits.device)
        lps, greedy = _logprobs_and_greedy(logits, idx, tgt)
        start = 0
        for k in plain:
            stop = start + len(targets[k])
            out[k] = LoglikelihoodResponse(token_logprobs=lps[start:stop], token_greedy=greedy[start:stop], token_mu=[],
                                           token_sigma=[], truncated=truncated[k])
            start = stop
    return out  # type: ignore[return-value]


# Logit elements reduced per pass on a CPU: 2**17 floats (512 KB) stay in cache through the
# log-sum-exp's passes and the argmax, measured about 2x faster than passes over the whole
# [N, vocab] tensor (docs/benchmarks.md). A GPU takes all rows in one pass.
CPU_PASS_ELEMENTS = 2**17


def _logprobs_and_greedy(logits: Any, idx: Any, tgt: Any) -> tuple[list[float], list[bool]]:
    """log p(tgt[j]) = logit − logsumexp and whether it is the argmax, at row idx[j] of `logits`
    (no [n, vocab] log-softmax is written)."""
    import torch

    step = len(idx) if logits.is_cuda else max(16, CPU_PASS_ELEMENTS // logits.shape[-1])
    lse = torch.empty(len(idx), dtype=torch.float32, device=logits.device)
    top = torch.empty(len(idx), dtype=torch.long, device=logits.device)
    for s in range(0, len(idx), step):
        block = logits.index_select(0, idx[s:s + step]).float()
        torch.logsumexp(block, -1, out=lse[s:s + step])
        torch.argmax(block, -1, out=top[s:s + step])
    picked = logits[idx, tgt].float()
    return (picked - lse).tolist(), (top == tgt).tolist()


def token_stats(logits: Any, target: list[int], moments: bool = True, truncated: int = 0) -> LoglikelihoodResponse:
    """A continuation's response from the [n, vocab] logits that predict its n tokens: log-probs,
    greedy flags, and with `moments` the mean and spread of log p under the model (Min-k%++);
    `truncated`: the input tokens cut to fit the model."""
    import torch

    if not target:
        return LoglikelihoodResponse([], [], [], [], truncated=truncated)
    logits = logits.float()
    tgt = torch.tensor(target, device=logits.device)
    lse = logits.logsumexp(-1)  # log p = logit − logsumexp, as `token_stats_many` computes it
    lps, greedy = (logits.gather(-1, tgt[:, None]).squeeze(-1) - lse).tolist(), (logits.argmax(-1) == tgt).tolist()
    if not moments:
        return LoglikelihoodResponse(token_logprobs=lps, token_greedy=greedy, token_mu=[], token_sigma=[],
                                     truncated=truncated)
    logp = logits - lse[:, None]
    p = logp.exp()
    lp = logp.masked_fill(torch.isinf(logp), 0.0)  # p = 0 there, so p*log p = 0
    mu = (p * lp).sum(-1)
    # Var = E[(log p - mu)^2]: the same as E[(log p)^2] - mu^2, without float32 cancellation.
    sigma = (p * (lp - mu[:, None]) ** 2).sum(-1).clamp(min=1e-6).sqrt()
    return LoglikelihoodResponse(token_logprobs=lps, token_greedy=greedy, token_mu=mu.tolist(), token_sigma=sigma.tolist(),
                                 truncated=truncated)
