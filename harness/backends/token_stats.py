"""Per-token statistics of scored continuations, from the logits that predict them.

The last step of log-likelihood scoring (harness/backends/hf.py and its shared-context paths):
log-probabilities, greedy flags, and on request the vocabulary mean and spread Min-k%++ needs.
Many continuations are scored together, and the collector is paused meanwhile (`gc_paused`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

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


def token_stats_many(blocks: list[Any], targets: list[list[int]], moments: list[bool],
                      truncated: list[int]) -> list[LoglikelihoodResponse]:
    """`token_stats` of many continuations at once (a block: the [n, vocab] logits predicting
    a continuation's n tokens, or a tuple of views that stack to them). Those without `moments` are scored together:
    their logit rows stacked once, then one log-sum-exp, gather and argmax over all of them
    (log p = logit − logsumexp: no [n, vocab] log-softmax is written per continuation)."""
    import torch

    out: list[LoglikelihoodResponse | None] = [None] * len(blocks)
    pieces = [b if isinstance(b, tuple) else (b,) for b in blocks]  # a block may come as views to stack
    plain = [k for k in range(len(blocks)) if not moments[k] and targets[k]]
    chosen = set(plain)
    for k in range(len(blocks)):
        if k not in chosen:
            out[k] = token_stats(torch.cat(pieces[k]), targets[k], moments[k], truncated[k])
    if plain:
        flat = torch.cat([p for k in plain for p in pieces[k]]).float()
        tgt = torch.tensor([t for k in plain for t in targets[k]], device=flat.device)
        lps = (flat.gather(-1, tgt[:, None]).squeeze(-1) - flat.logsumexp(-1)).tolist()
        greedy = (flat.argmax(-1) == tgt).tolist()
        start = 0
        for k in plain:
            stop = start + len(targets[k])
            out[k] = LoglikelihoodResponse(token_logprobs=lps[start:stop], token_greedy=greedy[start:stop], token_mu=[],
                                           token_sigma=[], truncated=truncated[k])
            start = stop
    return out  # type: ignore[return-value]


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
