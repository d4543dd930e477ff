"""Log-likelihoods of many continuations of one context, forwarding the context once.

A TOFU-style question sends 7 continuations (answer, paraphrase, 5 perturbed) of the same
context; few-shot and chat-templated prompts make the shared part longer still. The plain path
forwards context + continuation for each; here each distinct context is forwarded once with the
KV cache, the cache is expanded to one row per continuation, and the continuations are forwarded
against it (right-padded: padding after a token cannot change it). The logits that predict a
continuation's first token are the context pass's last ones. Values equal the plain path's to
float rounding (tests/test_shared_context.py checks 1e-5 and identical greedy flags), so it is on
by default; `HARNESS_SHARED_CONTEXT=0` or `HFBackend(shared_context=False)` turns it off.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from typing import Any, Callable

from harness.errors import ConfigError

MIN_GROUP = 2  # a context asked once gains nothing from the second pass
# The second pass also copies the context's KV cache once per continuation: it pays only when
# the context tokens it saves are at least this many times the group's continuation tokens.
MIN_SAVING = 2.0


def shared_context_default() -> bool:
    value = os.environ.get("HARNESS_SHARED_CONTEXT", "1").strip().lower()
    if value not in ("0", "1", "true", "false", "on", "off"):
        raise ConfigError(f"HARNESS_SHARED_CONTEXT must be 0 or 1, not {value!r}")
    return value in ("1", "true", "on")


def group_by_context(pairs: list[tuple[list[int], int]], eligible: Callable[[int], bool]) -> list[list[int]]:
    """Indices of the eligible (context + continuation, continuation length) pairs that share a
    context of at least one token, in groups of MIN_GROUP or more (first-seen order), where the
    second pass pays: the context tokens it saves are at least MIN_SAVING times the group's
    continuation tokens.

    Measured on the 2-core CPU (docs/benchmarks.md): with TOFU's short questions (about 12
    context tokens for 7 continuations of about 13) the extra forward call costs more than the
    72 context tokens it saves (and TOFU's longer questions, up to about 1.5 times the
    continuation tokens saved, still measured 8% slower shared), while a few-shot context of
    about 100 tokens (6.6 times) scores 1.9x faster shared. The rule sends the first to the
    one-pass path and the second here."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (seq, nc) in enumerate(pairs):
        if eligible(i) and 0 < nc < len(seq):
            groups[tuple(seq[:-nc])].append(i)
    return [g for ctx, g in groups.items()
            if len(g) >= MIN_GROUP and (len(g) - 1) * len(ctx) >= MIN_SAVING * sum(pairs[i][1] for i in g)]


def continuation_logits(model: Any, pad: Callable[[list[list[int]]], tuple[Any, Any, Any]], pad_id: int,
                        contexts: list[list[int]], continuations: list[list[int]], owner: list[int]) -> list[Any]:
    """For each continuation, the float32 logits predicting its n tokens, as the pair of views
    ([1, vocab] for the first token, [n - 1, vocab] for the rest) that stack to [n, vocab].

    `contexts` are distinct; `owner[r]` is the context of continuation r. `pad` left-pads a
    list of sequences to (ids, attention mask, position ids) on the model's device."""
    import torch

    ids, mask, pos = pad(contexts)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
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
    logits = second.logits.float()
    # Each continuation's rows as two views (first token's, the rest), stacked once by the scorer.
    return [(last[owner[r]][None], logits[r, : len(c) - 1]) for r, c in enumerate(continuations)]
