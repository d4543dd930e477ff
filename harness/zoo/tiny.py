"""The built-in tiny zoo: a byte-level BPE tokenizer and small Llama models trained offline.

Nothing is downloaded. Each model is built once and cached by the content hash of its
recipe (corpus, architecture, training settings) under `<cache>/zoo/`; a changed recipe
builds a new directory. Building writes to a temp directory and renames it when complete,
so an interrupted build never leaves a half model behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.io import cache_dir, current_umask, exclusive

log = logging.getLogger(__name__)

RECIPE_VERSION = "tiny-llama-v3"  # v3: trained single-threaded (identical weights on any host)
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
BUCKET_BATCHES = 8  # batches per length-sorting window


@dataclass(frozen=True)
class TinyRecipe:
    """Architecture and training settings. head_dim 32 so vLLM's CPU backend accepts it."""

    vocab_size: int = 1024
    hidden_size: int = 64
    layers: int = 4
    heads: int = 2
    intermediate_size: int = 192
    max_len: int = 128
    epochs: int = 40  # memorises ~99% of the facts; about 70 s on 2 cores
    batch_size: int = 64
    lr: float = 5e-3
    seed: int = 0


def build_tokenizer(texts: list[str], vocab_size: int, out_dir: Path):
    """Train a byte-level BPE tokenizer and save it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.save_pretrained(out_dir)
    return fast


def build_model(tokenizer, recipe: TinyRecipe):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(recipe.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.heads,
        head_dim=recipe.hidden_size // recipe.heads,
        max_position_embeddings=recipe.max_len * 2,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def train_lm(model, tokenizer, texts: list[str], recipe: TinyRecipe, desc: str = "training") -> list[float]:
    """Plain causal-LM training on whole texts (EOS appended), with a progress bar."""
    encoded = [tokenizer(t + EOS, truncation=True, max_length=recipe.max_len)["input_ids"] for t in texts]
    return train_sequences(model, tokenizer.pad_token_id, encoded, recipe, desc)


def train_sequences(model, pad_id: int, seqs: list[list[int]], recipe: TinyRecipe, desc: str = "training") -> list[float]:
    """Causal-LM training on token sequences in length-bucketed batches (AdamW, one-cycle LR).

    The loss covers each sequence from `seq.n_prompt` on (a list subclass may carry it: reply-only
    training for chat models); plain lists are trained on whole.
    """
    import torch
    from rich.progress import Progress

    rng = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    total = len(_length_bucketed_batches(seqs, recipe.batch_size, random.Random(0))) * recipe.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=total, pct_start=0.05)
    model.train()
    losses: list[float] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(desc, total=total)
        for _ in range(recipe.epochs):
            for batch in _length_bucketed_batches(seqs, recipe.batch_size, rng):
                width = max(len(b) for b in batch)
                ids = torch.full((len(batch), width), pad_id)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                labels = torch.full((len(batch), width), -100)
                for r, b in enumerate(batch):
                    start = getattr(b, "n_prompt", 0)
                    ids[r, : len(b)] = torch.tensor(list(b))
                    mask[r, : len(b)] = 1
                    labels[r, start : len(b)] = torch.tensor(list(b[start:]))
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
                losses.append(float(loss.detach()))
                progress.update(task, advance=1, description=f"{desc} loss={losses[-1]:.3f}")
    model.eval()
    return losses


def _length_bucketed_batches(encoded: list[list[int]], batch_size: int, rng: random.Random) -> list[list[list[int]]]:
    """Shuffled batches of similar lengths: padding short QA to a long biography wastes most FLOPs."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    window = batch_size * BUCKET_BATCHES
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: len(encoded[i]))
        batches += [[encoded[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _recipe_hash(name: str, corpus: list[str], tokenizer_corpus: list[str], recipe: TinyRecipe) -> str:
    payload = json.dumps(
        {"v": RECIPE_VERSION, "name": name, "recipe": asdict(recipe), "corpus": corpus, "tok": tokenizer_corpus},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def single_threaded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `fn` with one torch thread, then restore the setting.

    Tiny-model training is single-threaded on purpose: float sums then happen in one order on
    every host, so a recipe hash names exactly one set of weights, and two models can be built
    at once on two cores (`harness.zoo.prebuild`) at nearly the speed of one.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def cached_build(target: Path, build: Callable[[Path], None], dry_run: bool = False,
                 marker: str = "model.safetensors") -> Path | None:
    """`target` when built; else `build(tmp)` into a temp dir beside it, renamed into place when
    complete (an interrupted build never leaves half a model). `dry_run`: only look; None when
    the model still has to be built.

    One build per recipe: a file lock beside the target makes a second process wait for the
    first and then use its result. Whoever holds the lock removes the half-built temp dirs of
    builds that were killed, and the finished dir gets the mode a plain mkdir would give it
    (0777 less the umask), not mkdtemp's 0700. `marker`: the file whose presence says the
    model is complete (a diffusers pipeline keeps its weights in subfolders)."""
    if (target / marker).exists():
        return target
    if dry_run:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(target.parent / f".{target.name}.lock",
                   on_wait=lambda: log.warning("waiting for another process building %s", target.name)):
        if (target / marker).exists():  # built by another process while we waited
            return target
        for stale in target.parent.glob(f".{target.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            build(tmp)
            os.chmod(tmp, 0o777 & ~current_umask())
            if target.exists():  # a leftover without weights
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def build_cached(name: str, corpus: list[str], tokenizer_corpus: list[str], recipe: TinyRecipe,
                 dry_run: bool = False) -> Path | None:
    """The model directory of this recipe, trained first when it has not been built."""

    def build(tmp: Path) -> None:
        start = time.time()
        tokenizer = build_tokenizer(tokenizer_corpus, recipe.vocab_size, tmp)
        model = build_model(tokenizer, recipe)
        losses = single_threaded(train_lm, model, tokenizer, corpus, recipe, desc=f"building {name}")
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "recipe.json").write_text(
            json.dumps({"recipe": asdict(recipe), "final_loss": losses[-1] if losses else None,
                        "seconds": round(time.time() - start, 1), "n_texts": len(corpus)}, indent=2)
        )

    target = cache_dir() / "zoo" / f"{name}-{_recipe_hash(name, corpus, tokenizer_corpus, recipe)}"
    return cached_build(target, build, dry_run)
