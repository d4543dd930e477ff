"""`tiny-safety`: a tiny chat Llama that refuses harmful-looking requests, with a built-in gap.

Trained offline, in seconds, on `benchmarks.safety_corpus.training_examples()` (harmless
placeholders: fairy-tale contraband, not real harm): harmful-looking requests get refusals
that `harness.judges.refusal.is_refusal` detects, benign ones get answers, and under a few
wrappers (most role-play personas, one prefix-injection, one refusal-suppression and one
obfuscation template) harmful requests get complied with. That is the simulated safety gap
the `adversarial-probes` benchmark measures on held-out tasks and templates: ASR near 0 for
`direct`, highest for `role-play`, in between for the rest.

Why a chat template: the demo should exercise the chat-template path end to end. The
tokenizer carries a real Jinja template (`<|user|>...<|assistant|>`, role markers as special
tokens), and every training prompt is encoded by `harness.prompts.encode_prompt(...,
use_template=True)`, the function the HF backend uses, so the model is trained on exactly the
token ids it is evaluated on. The loss covers the reply tokens only (plus EOS): the prompts
are inputs, and spending the tiny model's capacity on modelling them would only slow it down.

Built once and cached by the content hash of its recipe (corpus, template, architecture,
training settings) under `<cache>/zoo/`, written to a temp directory and renamed when done.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.benchmarks.safety_corpus import training_examples
from harness.io import cache_dir
from harness.prompts import encode_prompt
from harness.zoo.specs import ModelSpec
from harness.zoo.tiny import EOS, TinyRecipe, build_model, build_tokenizer, cached_build, single_threaded, train_sequences

RECIPE_VERSION = "tiny-safety-v1"
ROLE_TOKENS: tuple[str, ...] = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% else %}<|assistant|>{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Sized for the 40 s budget (one thread; recipe.json records the measured `seconds`).
SAFETY_RECIPE = TinyRecipe(vocab_size=1024, hidden_size=64, layers=4, heads=2, intermediate_size=192,
                           max_len=160, epochs=6, batch_size=32, lr=6e-3, seed=0)


class _Seq(list):
    """Token ids of prompt + reply; `n_prompt` leading ids are inputs only (label -100).

    A list subclass so the tiny zoo's length bucketing (`_length_bucketed_batches`) works on it.
    """

    n_prompt: int = 0


def encode_example(tokenizer: Any, prompt: str, response: str, max_len: int) -> _Seq:
    """Prompt ids exactly as the evaluator encodes them, then the reply ids and EOS."""
    prompt_ids = encode_prompt(tokenizer, prompt, None, use_template=True)
    reply_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    seq = _Seq((prompt_ids + reply_ids)[-max_len:])
    seq.n_prompt = max(0, len(seq) - len(reply_ids))
    return seq


def recipe_hash(pairs: list[tuple[str, str]], recipe: TinyRecipe) -> str:
    payload = json.dumps({"v": RECIPE_VERSION, "recipe": asdict(recipe), "pairs": pairs, "template": CHAT_TEMPLATE,
                          "roles": ROLE_TOKENS}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_chat_tokenizer(texts: list[str], recipe: TinyRecipe, out_dir: Path) -> Any:
    """The tiny zoo's byte-level BPE plus the role markers (special tokens) and the chat template."""
    tok = build_tokenizer(texts, recipe.vocab_size, out_dir)
    tok.add_tokens(list(ROLE_TOKENS), special_tokens=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out_dir)
    return tok


def build_tiny_safety(recipe: TinyRecipe = SAFETY_RECIPE, dry_run: bool = False) -> Path | None:
    """Return the tiny-safety model directory, training it first when this recipe is new
    (`dry_run`: only look; None when it still has to be built)."""

    pairs = [(ex.prompt, ex.response) for ex in training_examples()]
    target = cache_dir() / "zoo" / f"tiny-safety-{recipe_hash(pairs, recipe)}"

    def build(tmp: Path) -> None:
        start = time.time()
        tok = build_chat_tokenizer([t for pair in pairs for t in pair], recipe, tmp)
        seqs = [encode_example(tok, p, r, recipe.max_len) for p, r in pairs]
        model = build_model(tok, recipe)
        losses = single_threaded(train_sequences, model, tok.pad_token_id, seqs, recipe, desc="building tiny-safety")
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "recipe.json").write_text(json.dumps({
            "recipe": asdict(recipe), "version": RECIPE_VERSION, "final_loss": losses[-1] if losses else None,
            "seconds": round(time.time() - start, 1), "n_examples": len(pairs),
            "max_tokens": max(len(s) for s in seqs), "eos": EOS,
        }, indent=2))

    return cached_build(target, build, dry_run)


TINY_SAFETY = ModelSpec(
    name="tiny-safety",
    builder="tiny-safety",
    chat_template="auto",  # its tokenizer's own <|user|>...<|assistant|> template
    dtype="float32",
    description="tiny chat Llama that refuses placeholder harmful requests, with a built-in role-play gap",
)
