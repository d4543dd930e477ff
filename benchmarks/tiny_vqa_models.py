"""The built-in model of the tiny-vqa benchmark: `tiny-vqa`, a tiny LLaVA that knows every object.

Trained offline by the generic builder of harness/zoo/tiny_vlm.py on every instance of the
tiny-vqa world (all 28 kinds x 2 facts, so `n_instances` only picks a subset): each fact
question and its 4 rephrasings with the one-word answer, and the visible colour / shape
questions, all in UnLOK-VQA's prompt (`unlok_attacks.PROMPT`), on the kind's canonical scene and on
2 random re-renders (seeds disjoint from the image paraphrases'; there with the main wordings
only). Captions (`DESCRIBE`) did not help at this budget and are off. Registered beside the
benchmark (harness/catalog.py, BUILDERS and MODELS).

Measured (2 cores, another job running): build 57-60 CPU-s; greedy accuracy on all 56 instance
questions 0.857, rephrasings 0.821, neighbourhood 0.714, image paraphrases easy / medium / hard
0.429 / 0.268 / 0.286 (docs/datasets.md §2b, with what was tried).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.benchmarks import tiny_vqa as tq
from harness.benchmarks.unlok_attacks import PROMPT
from harness.zoo.specs import ModelSpec
from harness.zoo.tiny_vlm import DESCRIBE, TinyVLMRecipe, VisualExample, build_vlm_cached

N_TRAIN_RENDERS = 2  # random re-renders per kind, besides the canonical scene
# Sized to build in about a minute of one CPU (docs/datasets.md §2b). Width matters more than
# epochs here: at hidden 64 (the tiny-faces default) 10 epochs never learnt to read the picture.
TVQA_RECIPE = TinyVLMRecipe(vision_hidden=128, vision_heads=4, vision_intermediate=256, vocab_size=512,
                            text_hidden=128, text_layers=4, text_heads=4, text_intermediate=384, max_len=128,
                            epochs=18, batch_size=16, lr=1e-3)


def questions(kind: tq.ObjectKind) -> list[tuple[str, str]]:
    """Every (question, answer) trained for a kind: both facts in all 5 wordings, colour, shape."""
    out = [(q, kind.facts[i]) for i, ft in enumerate(tq.FACT_TYPES) for q in (ft.question, *ft.rephrasings)]
    return out + [(tq.COLOUR_QUESTION, kind.colour), (tq.SHAPE_QUESTION, kind.shape)]


def main_questions(kind: tq.ObjectKind) -> list[tuple[str, str]]:
    """The fact questions in their main wording, colour and shape."""
    out = [(ft.question, kind.facts[i]) for i, ft in enumerate(tq.FACT_TYPES)]
    return out + [(tq.COLOUR_QUESTION, kind.colour), (tq.SHAPE_QUESTION, kind.shape)]


def training_set(n_renders: int = N_TRAIN_RENDERS, captions: bool = False,
                 wordings: bool = False) -> tuple[list[VisualExample], dict[str, Any]]:
    """Examples and images: every question of every kind on its canonical scene and on each of
    `n_renders` training re-renders, plus (with `captions`) a caption of each picture. Without
    `wordings` the re-renders get only the main questions (the rephrasings only the scene)."""
    images: dict[str, Any] = {}
    examples: list[VisualExample] = []
    for kind in tq.object_kinds():
        renders = [("canon", tq.canonical_render(kind.index))]
        renders += [(f"train{j}", r) for j, r in enumerate(tq.training_renders(kind.index, n_renders))]
        for tag, render in renders:
            key = f"kind-{kind.index:02d}-{tag}"
            images[key] = tq.draw(render)
            qa = questions(kind) if wordings or tag == "canon" else main_questions(kind)
            examples += [VisualExample(key, PROMPT.format(question=q), a) for q, a in qa]
            if captions:
                examples.append(VisualExample(key, DESCRIBE, kind.caption()))
    return examples, images


def tokenizer_corpus() -> list[str]:
    """Every text the model could be asked or answer (the instance questions, wrong answers, names)."""
    texts = []
    for kind in tq.object_kinds():
        texts += [f"USER: \n{PROMPT.format(question=q)} ASSISTANT: {a}" for q, a in questions(kind)]
        texts += [kind.caption(), *kind.wrong, kind.name]
    texts += list(tq.PLACES) + list(tq.USES) + list(tq.NAMES)
    return texts


def build_tiny_vqa(dry_run: bool = False, recipe: TinyVLMRecipe | None = None) -> Path | None:
    """`tiny-vqa`: trained on every tiny-vqa instance (see the module docstring)."""
    examples, images = training_set()
    return build_vlm_cached("tiny-vqa", examples, images, tokenizer_corpus(), recipe or TVQA_RECIPE, dry_run=dry_run)


TINY_VQA = ModelSpec(
    name="tiny-vqa",
    kind="image-text-to-text",
    builder="tiny-vqa",
    dtype="float32",
    description="tiny LLaVA trained offline on every tiny-vqa object fact (the VLM to delete facts from)",
)
