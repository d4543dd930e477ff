"""The built-in models of the fictitious-facts benchmark: `tiny-facts` and its retain-only reference.

Both are tiny Llamas trained offline on the benchmark's own corpus by the tiny zoo's builder
(harness/zoo/tiny.py), and registered beside the benchmark (harness/catalog.py, MODELS).
"""

from __future__ import annotations

from pathlib import Path

from harness.benchmarks.fictitious_facts import training_corpus
from harness.zoo.specs import ModelSpec
from harness.zoo.tiny import TinyRecipe, build_cached


def build_tiny_facts(dry_run: bool = False) -> Path | None:
    """`tiny-facts`: trained on every trained fictitious-facts entity."""
    full = training_corpus()
    return build_cached("tiny-facts", full, full, TinyRecipe(), dry_run=dry_run)


def build_tiny_facts_retain(dry_run: bool = False) -> Path | None:
    """`tiny-facts-retain`: the same recipe without the forget10 entities (retain-only reference)."""
    return build_cached("tiny-facts-retain", training_corpus(exclude="forget10"), training_corpus(), TinyRecipe(),
                        dry_run=dry_run)


TINY_FACTS = ModelSpec(
    name="tiny-facts",
    builder="tiny-facts",
    chat_template="none",
    dtype="float32",
    description="tiny Llama trained offline on every fictitious-facts entity (the model to unlearn)",
)
TINY_FACTS_RETAIN = ModelSpec(
    name="tiny-facts-retain",
    builder="tiny-facts-retain",
    chat_template="none",
    dtype="float32",
    description="tiny Llama trained without the forget10 entities (the retain-only reference)",
)
