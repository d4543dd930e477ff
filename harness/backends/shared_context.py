"""Log-likelihoods of many continuations of one context, forwarding the context once.

A TOFU-style question sends 7 continuations (answer, paraphrase, 5 perturbed) of the same
context; few-shot and chat-templated prompts make the shared part longer still. The plain path
forwards context + continuation for each. Here, two ways forward each distinct context once:

- packed (`packed_logits`, groups of up to PACK_MAX_TOKENS): one row per group, the context
  followed by every continuation, a custom 4D attention mask letting each continuation see only
  the context and its own earlier tokens, and position ids that restart after the context for
  each continuation; one forward call. HFBackend checks once per model that this agrees with
  the plain path (a model that ignores a custom mask falls back to the next way);
- KV cache (`continuation_logits`, longer groups): the context forwarded with its cache, the
  cache expanded to one row per continuation, the continuations forwarded against it
  (right-padded: padding after a token cannot change it).

The logits that predict a continuation's first token are the context's last ones. Values equal
the plain path's to float rounding (tests/test_shared_context.py checks 1e-5 and identical greedy
flags), so it is on by default; `HARNESS_SHARED_CONTEXT=0` or `HFBackend(shared_context=False)`
turns it off.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from functools import lru_cache
from typing import Any, Callable

from harness.errors import ConfigError

MIN_GROUP = 2  # a context asked once gains nothing from the second pass
# The second pass also copies the context's KV cache once per continuation: it pays only when
# the context tokens it saves are at least this many times the group's continuation tokens.
MIN_SAVING = 2.0


@lru_cache(maxsize=None)
def _forward_params(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


def forward_accepts(model: Any, name: str) -> bool:
    """Whether the model's forward takes `name` (`logits_to_keep`, `cache`), looked up once per
    model class (a PEFT wrapper answers for its base model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in _forward_params(type(base))


def shared_context_default() -> bool:
    value = os.environ.get("HARNESS_SHARED_CONTEXT", "1").strip().lower()
    if value not in ("0", "1", "true", "false", "on", "off"):
        raise ConfigError(f"HARNESS_SHARED_CONTEXT must be 0 or 1, not {value!r}")
    return value in ("1", "true", "on")


def group_by_context(pairs: list[tuple[list[int], int]], eligible: Callable[[int], bool],
                     min_saving: float = MIN_SAVING) -> list[list[int]]:
    """Indices of the eligible (context + continuation, continuation length) pairs that share a
    context of at least one token, in groups of MIN_GROUP or more (first-seen order), where the
    second pass pays: the context tokens it saves are at least `min_saving` (MIN_SAVING) times
    the group's continuation tokens.

    Measured on the 2-core CPU (docs/benchmarks.md): with TOFU's short questions (about 12
    context tokens for 7 continuations of about 13) the extra forward call costs more than the
    72 context tokens it saves (and TOFU's longer questions, up to about 1.5 times the
    continuation tokens saved, still measured 8% slower shared), while a few-shot context of
    about 100 tokens (6.6 times) scores 1.9x faster shared. The rule sends the first to the
    one-pass path and the second here. `min_saving=0` groups every shared context (packing,
    below, has no second call to pay for)."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (seq, nc) in enumerate(pairs):
        if eligible(i) and 0 < nc < len(seq):
            groups[tuple(seq[:-nc])].append(i)
    return [g for ctx, g in groups.items()
            if len(g) >= MIN_GROUP
            and (len(g) - 1) * len(ctx) >= min_saving * sum(pairs[i][1] for i in g)]


def continuation_logits(model: Any, pad: Callable[[list[list[int]]], tuple[Any, Any, Any]], pad_id: int,
                        contexts: list[list[int]], continuations: list[list[int]], owner: list[int]) -> list[Any]:
    """Float32 logits [N, vocab] and, for each continuation, the rows of them that predict its n
    tokens (the first: its context's last row; the rest: its own).

    `contexts` are distinct; `owner[r]` is the context of continuation r. `pad` left-pads a
    list of sequences to (ids, attention mask, position ids) on the model's device."""
    import torch

    ids, mask, pos = pad(contexts)
    keep = {"logits_to_keep": 1} if forward_accepts(model, "logits_to_keep") else {}
    cache_arg = "cache" if forward_accepts(model, "cache") else "past_key_values"  # renamed in transformers 5.2x
    first = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **keep)
    last = first.logits[:, -1].float()  # predicts each continuation's first token
    cache = getattr(first, cache_arg)
    rows = torch.tensor(owner, device=ids.device)
    cache.reorder_cache(rows)  # one cache row per continuation (index_select repeats rows)
    width = max(len(c) for c in continuations)
    cont = torch.full((len(continuations), width), pad_id, dtype=torch.long, device=ids.device)
    cont_mask = torch.zeros((len(continuations), width), dtype=torch.long, device=ids.device)
    for r, c in enumerate(continuations):
        cont[r, : len(c)] = torch.tensor(c, dtype=torch.long)
        cont_mask[r, : len(c)] = 1
    ctx_len = mask.sum(-1)[rows]  # real context tokens: positions continue from there
    cont_pos = ctx_len[:, None] + torch.arange(width, device=ids.device)[None, :]
    full_mask = torch.cat([mask[rows], cont_mask], dim=-1)
    second = model(input_ids=cont, attention_mask=full_mask, position_ids=cont_pos, use_cache=True, **{cache_arg: cache})
    logits = torch.cat([last, second.logits.float().reshape(-1, second.logits.shape[-1])])
    return logits, [[owner[r], *range(len(last) + r * width, len(last) + r * width + len(c) - 1)]
                    for r, c in enumerate(continuations)]


# A group packed into one row: at most this many tokens (its attention grows with the square).
PACK_MAX_TOKENS = 512


def packable(context: list[int], continuations: list[list[int]]) -> bool:
    return len(context) + sum(len(c) for c in continuations) <= PACK_MAX_TOKENS


def packed_logits(model: Any, pad_id: int, device: Any, contexts: list[list[int]],
                  groups: list[list[list[int]]]) -> tuple[Any, list[list[list[int]]]]:
    """Each context forwarded once, in one pass: one row per group, the context followed by all
    its continuations, each continuation attending to the context and to its own earlier tokens
    only, at the positions it has after the context alone (a custom 4D mask and position ids).

    Returns float32 logits [N, vocab] and, per group and continuation, the rows of them that
    predict its tokens (the first: the context's last row, shared). Rows are left-padded; a
    padding query attends to itself alone (a row of nothing but masked scores would be NaN)."""
    import torch

    rows, segs, poss = [], [], []
    for ctx, conts in zip(contexts, groups):
        rows.append(ctx + [t for c in conts for t in c])
        segs.append([0] * len(ctx) + [k + 1 for k, c in enumerate(conts) for _ in c])
        poss.append(list(range(len(ctx))) + [len(ctx) + j for c in conts for j in range(len(c))])
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    seg = torch.tensor([[-1] * (width - len(r)) + sg for r, sg in zip(rows, segs)], dtype=torch.long)
    pos = torch.tensor([[0] * (width - len(r)) + ps for r, ps in zip(rows, poss)], dtype=torch.long)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    key, query = seg[:, None, :], seg[:, :, None]
    allowed = causal & (key >= 0) & ((key == 0) | (key == query))
    allowed |= torch.eye(width, dtype=torch.bool) & (query < 0)  # padding queries: themselves
    dtype = next(model.parameters()).dtype
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    # Logits only where read: the rows end together (left padding), and what is read is each
    # row's last context token and its continuations, so the last `keep` positions.
    keep = max(sum(len(c) for c in conts) for conts in groups) + 1
    extra = {"logits_to_keep": keep} if forward_accepts(model, "logits_to_keep") else {}
    logits = model(input_ids=ids.to(device), attention_mask=mask[:, None].to(device), position_ids=pos.to(device),
                   use_cache=False, **extra).logits.float()
    n_pos = logits.shape[1]
    shift = width - n_pos  # column c of `logits` is position c + shift
    out = []
    for b, (ctx, conts) in enumerate(zip(contexts, groups)):
        last = b * n_pos + width - len(rows[b]) - shift + len(ctx) - 1  # predicts every continuation's first token
        at, members = last + 1, []
        for c in conts:
            members.append([last, *range(at, at + len(c) - 1)])
            at += len(c)
        out.append(members)
    return logits.reshape(-1, logits.shape[-1]), out
