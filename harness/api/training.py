"""Training data for unlearning methods: encoded items, forget/retain pairing, padding."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.prompts import encode_answer, encode_prompt, encode_vlm_prompt

# Label value the loss ignores (HF convention): prompt and padding positions.
IGNORE_INDEX = -100


def quiet_trainer(trainer: Any) -> Any:
    """HF Trainer's raw log dicts (`{'loss': ...}`) go to the `harness.training` logger (the
    run's log file, harness/runlog.py) instead of stdout or the progress bar; the bar stays."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

    training_log = logging.getLogger("harness.training")

    class LogToFile(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero and logs:
                training_log.info("step %s: %s", state.global_step, logs)

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            pass  # the dict is logged by LogToFile; the bar is left as it is

    had_bar = any(isinstance(c, ProgressCallback) for c in trainer.callback_handler.callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if had_bar:
        trainer.add_callback(BarOnly)
    trainer.add_callback(LogToFile)
    return trainer


def answer_nll_mean(model: Any, batch: dict[str, Any]) -> Any:
    """HF mean token cross-entropy over answer tokens (labels ≠ −100): `model(**batch).loss`."""
    return model(**batch).loss


if TYPE_CHECKING:
    from harness.api.benchmark import Benchmark

log = logging.getLogger(__name__)


def encode_item(
    benchmark: "Benchmark", item: Any, tokenizer: Any, max_length: int, chat: bool = False, answer: str | None = None
) -> dict:
    """`prompt + target (+ EOS)` as ids, with labels −100 on the prompt tokens; right-truncated.

    The target is encoded by `harness.prompts.encode_answer` under the benchmark's `answer_eos`,
    as the backends encode a scored answer.

    The prompt is encoded by `harness.prompts.encode_prompt`, exactly as the backend encodes it
    for evaluation (under the chat template when `chat`). `answer` replaces `item.answer` as the
    target text (IdkDPO's "I don't know" answers); it goes through `benchmark.target` too.

    `tokenizer` may be a VLM's processor: then the prompt goes through `encode_vlm_prompt` with
    the item's images (`benchmark.images`), as the HF backend encodes it, and the encoding
    carries their `pixel_values` ([n_images, 3, H, W]) for `PairCollator`.
    """
    pixels = None
    if is_processor(tokenizer):
        images = [m.open_image() for m in benchmark.images(item)]
        prompt_ids, pixels = encode_vlm_prompt(tokenizer, benchmark.prompt(item), images, use_template=chat)
        tokenizer = tokenizer.tokenizer
    else:
        prompt_ids = encode_prompt(tokenizer, benchmark.prompt(item), use_template=chat)
    text = item.answer if answer is None else answer
    answer_ids = encode_answer(tokenizer, benchmark.target(text), benchmark.answer_eos)
    ids = (list(prompt_ids) + list(answer_ids))[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + list(answer_ids))[:max_length]
    if pixels is not None:
        return {"input_ids": ids, "labels": labels, "pixel_values": pixels}
    return {"input_ids": ids, "labels": labels}


def is_processor(tokenizer: Any) -> bool:
    """Whether `tokenizer` is a multimodal processor (it preprocesses images and owns a tokenizer)."""
    return hasattr(tokenizer, "image_processor") and hasattr(tokenizer, "tokenizer")


def _has_answer(enc: dict) -> bool:
    return any(l != IGNORE_INDEX for l in enc["labels"][1:])


def encode_items(
    benchmark: "Benchmark",
    items: list,
    tokenizer: Any,
    max_length: int,
    chat: bool = False,
    alternate_answers: list[str] | None = None,
) -> list[dict]:
    """Encode a split, dropping (with a warning) items whose answer falls beyond `max_length`.

    `alternate_answers` (one string per item) adds a second target for the same prompt under
    the key `"alternate"` (an encoded `{input_ids, labels}` dict), e.g. IdkDPO's preferred
    "I don't know" answer. An item is dropped when either of its targets has no answer token
    within `max_length`. `PairCollator` pads the alternates into `batch["alternate"]`.
    """
    if alternate_answers is not None and len(alternate_answers) != len(items):
        raise ValueError(f"alternate_answers has {len(alternate_answers)} entries for {len(items)} items")
    out = [encode_item(benchmark, it, tokenizer, max_length, chat) for it in items]
    if alternate_answers is not None:
        for enc, it, alt in zip(out, items, alternate_answers):
            enc["alternate"] = encode_item(benchmark, it, tokenizer, max_length, chat, answer=alt)
    kept = [e for e in out if _has_answer(e) and ("alternate" not in e or _has_answer(e["alternate"]))]
    if len(kept) < len(out):
        log.warning(
            "%d of %d items have no answer tokens within max_length=%d; dropped", len(out) - len(kept), len(out), max_length
        )
    if not kept:
        raise HarnessError(
            f"benchmark {benchmark.name!r}: no trainable items (empty split, or max_length {max_length} too small)"
        )
    return kept


MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "labels", "pixel_values")


def model_inputs(batch: dict) -> dict:
    """The keys of a padded batch the model takes (`input_ids`, `attention_mask`, `labels`, and
    a VLM's `pixel_values`), without extras such as `alternate`."""
    return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


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
    """Right-pads each side of a list of {forget, retain} examples into tensor batches.

    Rows that carry an `alternate` encoding get it padded (to its own width) under `batch["alternate"]`.
    Rows with images (a VLM's items) have their `pixel_values` concatenated in row order, the
    order the model fills the image placeholders in.
    """

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
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        pixels = [r["pixel_values"] for r in rows if r.get("pixel_values") is not None]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)
        if all("alternate" in r for r in rows):  # a second target per row (encode_items' alternate_answers)
            batch["alternate"] = self.pad([r["alternate"] for r in rows])
        return batch


def pad_id(tokenizer: Any) -> int:
    tokenizer = tokenizer.tokenizer if is_processor(tokenizer) else tokenizer
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return 0
