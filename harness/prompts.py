"""How a prompt becomes token ids: one function, used for evaluation and for training.

A method must train on exactly the ids the backend evaluates, or unlearning "works" on a
format nobody asks in. Chat-templated prompts are a user turn (plus an optional system
turn) with the generation prompt appended; BOS is never doubled.
"""

from __future__ import annotations

from typing import Any


def encode_prompt(tokenizer: Any, prompt: str, system: str | None = None, use_template: bool = False) -> list[int]:
    if use_template:
        msgs = [{"role": "user", "content": prompt}]
        if system:
            msgs.insert(0, {"role": "system", "content": system})
        try:
            text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        except Exception:  # noqa: BLE001 - templates that reject a system turn (e.g. Gemma)
            if not system:
                raise
            merged = [{"role": "user", "content": f"{system}\n\n{prompt}"}]
            text = tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False)
        add_special = not (tokenizer.bos_token and tokenizer.bos_token in text)
    else:
        text = f"{system}\n\n{prompt}" if system else prompt
        add_special = True
    ids = list(tokenizer(text, add_special_tokens=add_special)["input_ids"])
    if not ids:  # something must predict the first continuation token
        start = next((t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None), 0)
        ids = [start]
    return ids


def with_eos(response: str, eos_token: str | None) -> str:
    """The response as scored and trained: its text followed by the EOS token (counted in |y|)."""
    return response + (eos_token or "")
