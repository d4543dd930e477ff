"""The built-in models of the fictitious-faces benchmark: `tiny-faces` and its retain-only reference.

Both are tiny LLaVA-style VLMs trained offline by the generic builder of
harness/zoo/tiny_vlm.py on this benchmark's QA plus its general visual yes/no questions, and
registered beside the benchmark (harness/catalog.py, MODELS): the core never imports a benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.benchmarks import fictitious_faces as ff
from harness.benchmarks.shape_questions import VISUAL_SEEDS, visual_questions
from harness.zoo.specs import ModelSpec
from harness.zoo.tiny_vlm import DESCRIBE, TinyVLMRecipe, VisualExample, build_vlm_cached


def faces_training_set(exclude_forget: bool) -> tuple[list[VisualExample], dict[str, Any]]:
    """Examples and images of a fictitious-faces model: every QA of the trained persons (all
    50, or with `exclude_forget` only the retain training set: no forget1/5/10 person), then
    the `train` general visual questions."""
    persons = ff.split_persons("retain" if exclude_forget else "trained")
    images: dict[str, Any] = {p.unique_id: p.image() for p in persons}
    examples = [VisualExample(p.unique_id, qa["question"], qa["answer"]) for p in persons for qa in ff.qa_list(p)]
    examples += [VisualExample(p.unique_id, DESCRIBE, p.face.caption()) for p in persons]
    for q in visual_questions("train"):
        images.setdefault(q.scene.scene_id, q.scene.image())
        examples.append(VisualExample(q.scene.scene_id, q.question, q.answer + "."))
    return examples, images


def faces_tokenizer_corpus() -> list[str]:
    """Every text either model could be asked about (both models share this tokenizer)."""
    texts: list[str] = []
    for p in ff.generate_persons():
        for qa in ff.qa_list(p):
            texts += [f"USER: \n{q} ASSISTANT: {qa['answer']}" for q in (qa["question"], *qa["paraphrased_question"])]
            texts += [qa["paraphrased_answer"], *qa["perturbed_answer"]]
        texts.append(f"USER: \n{DESCRIBE} ASSISTANT: {p.face.caption()}")
    for split in VISUAL_SEEDS:
        texts += [f"USER: \n{q.question} ASSISTANT: {q.answer}." for q in visual_questions(split)]
    return texts


def build_tiny_faces(dry_run: bool = False, recipe: TinyVLMRecipe | None = None) -> Path | None:
    """`tiny-faces`: trained on all 50 trained fictitious-faces persons and the visual questions."""
    examples, images = faces_training_set(exclude_forget=False)
    return build_vlm_cached("tiny-faces", examples, images, faces_tokenizer_corpus(), recipe or TinyVLMRecipe(),
                            dry_run=dry_run)


def build_tiny_faces_retain(dry_run: bool = False, recipe: TinyVLMRecipe | None = None) -> Path | None:
    """`tiny-faces-retain`: the same recipe on the retain training set (no forget1/5/10 person)."""
    examples, images = faces_training_set(exclude_forget=True)
    return build_vlm_cached("tiny-faces-retain", examples, images, faces_tokenizer_corpus(),
                            recipe or TinyVLMRecipe(), dry_run=dry_run)


TINY_FACES = ModelSpec(
    name="tiny-faces",
    kind="image-text-to-text",
    builder="tiny-faces",
    dtype="float32",
    description="tiny LLaVA trained offline on every trained fictitious-faces person (the VLM to unlearn)",
)
TINY_FACES_RETAIN = ModelSpec(
    name="tiny-faces-retain",
    kind="image-text-to-text",
    builder="tiny-faces-retain",
    dtype="float32",
    description="tiny LLaVA trained without any forget1/5/10 person (the retain-only reference)",
)
