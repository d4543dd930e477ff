"""Exact-match recall: does the greedy answer contain the reference answer?"""

from __future__ import annotations

import re
import string
import unicodedata
from harness.metrics.generation import GreedyAnswerMetric

_ASCII_PUNCT = set(string.punctuation)


def normalize_text(text: str) -> str:
    """Lowercase, delete punctuation (ASCII and Unicode category P*), collapse whitespace."""
    text = text.lower()
    text = "".join(
        ch for ch in text if ch not in _ASCII_PUNCT and not unicodedata.category(ch).startswith("P")
    )
    return re.sub(r"\s+", " ", text).strip()


def contains_answer(generation: str, answer: str) -> bool | None:
    """True when normalised `answer` occurs in normalised `generation` as a whole-word span.

    None when the answer normalises to the empty string (nothing to look for).
    """
    ref = normalize_text(answer)
    if not ref:
        return None
    return f" {ref} " in f" {normalize_text(generation)} "


class ExactMatchRecall(GreedyAnswerMetric):
    """Share of items whose reference answer appears in the greedy generation.

    Definition: generate greedily (the same request ROUGE-L recall uses, so it runs once),
    cut at any stop string, then normalise both texts: lowercase, delete punctuation,
    collapse runs of whitespace to one space. The item scores 1.0 when the normalised
    reference answer occurs in the normalised generation as a contiguous run of whole
    words (so "1" does not match "1990"), else 0.0. Items whose answer normalises to the
    empty string are skipped. The metric is the mean over items.
    """

    name = "exact_match_recall"
    def score(self, reference: str, generation: str) -> float | None:
        hit = contains_answer(generation, reference)
        return None if hit is None else float(hit)
