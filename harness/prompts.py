"""How a prompt becomes token ids: one function, used for evaluation and for training.

A method must train on exactly the ids the backend evaluates, or unlearning "works" on a
format nobody asks in. Chat-templated prompts are a user turn (plus an optional system
turn) with the generation prompt appended; BOS is never doubled.
"""

from __future__ import annotations

from typing import Any, Sequence


def encode_prompt(tokenizer: Any, prompt: str, system: str | None = None, use_template: bool = False) -> list[int]:
    return encode_prompts(tokenizer, [(prompt, system, use_template)])[0]


def encode_prompts(tokenizer: Any, prompts: Sequence[tuple[str, str | None, bool]]) -> list[list[int]]:
    """`encode_prompt` of many (prompt, system, use_template) at once: the texts built one by
    one, tokenized in one batched call per special-token setting (the same ids as one at a time)."""
    texts = [_prompt_text(tokenizer, *p) for p in prompts]
    out: list[list[int]] = [[] for _ in texts]
    for add_special in (True, False):
        idx = [i for i, (_, a) in enumerate(texts) if a is add_special]
        if idx:
            encoded = tokenizer([texts[i][0] for i in idx], add_special_tokens=add_special)["input_ids"]
            for i, ids in zip(idx, encoded):
                out[i] = list(ids)
    start = next((t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None), 0)
    return [ids or [start] for ids in out]  # something must predict the first continuation token


def _prompt_text(tokenizer: Any, prompt: str, system: str | None, use_template: bool) -> tuple[str, bool]:
    """(the text to tokenize, whether the tokenizer adds its special tokens): chat-templated as a
    user turn (plus a system turn) with the generation prompt, BOS never doubled."""
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
        return text, not (tokenizer.bos_token and tokenizer.bos_token in text)
    return (f"{system}\n\n{prompt}" if system else prompt), True


def encode_answer(tokenizer: Any, text: str, answer_eos: bool) -> list[int]:
    """Token ids of an answer as trained and scored after its prompt: the text's ids, then (with
    `answer_eos`) the tokenizer's EOS id unless the ids already end with it.

    open-unlearning's rule (`preprocess_chat_instance`: `if chat_ids[-1] != eos: chat_ids += [eos]`),
    written once here for training (`harness.api.training.encode_item`) and for the backends that
    score a `LoglikelihoodRequest`, so the two agree. An empty answer stays empty: it has no
    token to score, and the metrics skip and count it (docs/metrics.md, "Answer EOS").
    """
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
    return with_answer_eos(tokenizer, ids, answer_eos)


def with_answer_eos(tokenizer: Any, ids: list[int], answer_eos: bool) -> list[int]:
    """`encode_answer`'s EOS rule on ids already tokenized (the backends tokenize a batch at once)."""
    if not (answer_eos and ids):  # the tokenizer's eos_token_id is slow to read: only when needed
        return list(ids)
    eos = getattr(tokenizer, "eos_token_id", None)
    return [*ids, eos] if eos is not None and ids[-1] != eos else list(ids)


def with_eos(response: str, eos_token: str | None) -> str:
    """The response as scored and trained: its text followed by the EOS token (counted in |y|)."""
    return response + (eos_token or "")


def encode_vlm_prompt(processor: Any, prompt: str, images: Sequence[Any] = (), system: str | None = None,
                      use_template: bool = True, expand: bool = True) -> tuple[list[int], Any]:
    """(token ids, pixel_values) of a prompt showing `images` (PIL) to an image-text-to-text model.

    The one encoder of VLM prompts, for evaluation (harness/backends/hf.py) and training
    (harness/api/training.py, the tiny VLM builder), so a model is trained on exactly the ids
    it is evaluated on. Under the template the user turn is the images' placeholders then the
    text (content parts, as llava-hf's templates take them); raw, one placeholder line per
    image precedes the prompt. The processor expands each placeholder to the image's tokens,
    so the ids match `pixel_values` (a [n_images, 3, H, W] tensor; None without images).
    `expand=False` keeps one placeholder token per image and returns no pixels: the form vLLM
    takes, whose own processor expands it (token ids it is given already expanded are
    misread, tests/test_vllm_backend.py).
    """
    if use_template:
        parts: list[dict[str, Any]] = [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt}]
        msgs: list[dict[str, Any]] = [{"role": "user", "content": parts}]
        if system:
            msgs.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
        text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    else:
        body = f"{system}\n\n{prompt}" if system else prompt
        text = "".join(f"{processor.image_token}\n" for _ in images) + body
    tok = processor.tokenizer
    add_special = not (tok.bos_token and tok.bos_token in text)
    if not images or not expand:
        return list(tok(text, add_special_tokens=add_special)["input_ids"]), None
    enc = processor(images=list(images), text=text, add_special_tokens=add_special, return_tensors="pt")
    return enc["input_ids"][0].tolist(), enc["pixel_values"]
