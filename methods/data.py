"""Training data for unlearning methods: encoded items, forget/retain pairing, padding."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.prompts import encode_prompt
from methods.losses import IGNORE_INDEX

if TYPE_CHECKING:
    from benchmarks.base import Benchmark

log = logging.getLogger(__name__)


def encode_item(benchmark: "Benchmark", item: Any, tokenizer: Any, max_length: int, chat: bool = False) -> dict:
    """`prompt + target + EOS` as ids, with labels −100 on the prompt tokens; right-truncated.

    The prompt is encoded by `harness.prompts.encode_prompt`, exactly as the backend encodes it
    for evaluation (under the chat template when `chat`).
    """
    prompt_ids = encode_prompt(tokenizer, benchmark.prompt(item), use_template=chat)
    answer_ids = tokenizer(benchmark.target(item.answer), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    ids = (list(prompt_ids) + list(answer_ids))[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + list(answer_ids))[:max_length]
    return {"input_ids": ids, "labels": labels}


def encode_items(
    benchmark: "Benchmark", items: list, tokenizer: Any, max_length: int, chat: bool = False
) -> list[dict]:
    """Encode a split, dropping (with a warning) items whose answer falls beyond `max_length`."""
    out = [encode_item(benchmark, it, tokenizer, max_length, chat) for it in items]
    kept = [e for e in out if any(l != IGNORE_INDEX for l in e["labels"][1:])]
    if len(kept) < len(out):
        log.warning(
            "%d of %d items have no answer tokens within max_length=%d; dropped", len(out) - len(kept), len(out), max_length
        )
    if not kept:
        raise HarnessError(
            f"benchmark {benchmark.name!r}: no trainable items (empty split, or max_length {max_length} too small)"
        )
    return kept


class ForgetRetainDataset:
    """Anchored on forget: item i is forget[i] plus a uniformly random retain example.

    As in open-unlearning, the retain partner is drawn afresh each time an item is fetched;
    the draws come from a private RNG seeded with `seed`, so a run is reproducible.
    """

    def __init__(self, forget: list[dict], retain: list[dict] | None, seed: int):
        self.forget = forget
        self.retain = retain
        self.seed = seed
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict:
        item = {"forget": self.forget[i]}
        if self.retain:
            item["retain"] = self.retain[self._rng.randrange(len(self.retain))]
        return item


class PairCollator:
    """Right-pads each side of a list of {forget, retain} examples into tensor batches."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        return {key: self.pad([ex[key] for ex in examples]) for key in examples[0]}

    def pad(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for r, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[r, :n] = torch.tensor(row["input_ids"])
            mask[r, :n] = 1
            labels[r, :n] = torch.tensor(row["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pad_id(tokenizer: Any) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return 0
