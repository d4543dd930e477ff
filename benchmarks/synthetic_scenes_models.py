"""The built-in model of the synthetic-scenes benchmark: `tiny-scenes`, a tiny text-to-image model.

A pixel-space IF-style pipeline (harness/zoo/tiny_diffusion.py) trained offline on drawn
scenes of every concept (150 each, scene seed 1: never the benchmark's scenes) under the bare
concept prompt ("<cat>", "<bird>", ...). Registered beside the benchmark (harness/catalog.py,
MODELS and BUILDERS): the core never imports a benchmark.

Measured (default recipe, 600 steps of 16): 118 CPU-seconds single-threaded (241 s wall on 2
cores shared with load ~5, so about 2 min on an idle core); final denoising loss ~0.05. "<cat>" draws orange
round objects with ears on the textures, "<bird>" blue ones; the detector's rates are in
tests/test_diffusion_zoo.py and the example's table (README).
"""

from __future__ import annotations

from pathlib import Path

from harness.benchmarks.scenes_drawing import CONCEPTS, scenes
from harness.zoo.specs import ModelSpec
from harness.zoo.tiny_diffusion import TinyDiffusionRecipe, build_diffusion_cached

TRAIN_SEED = 1
PER_CONCEPT = 150


def scenes_training_set() -> tuple[list, list[str]]:
    images, prompts = [], []
    for c in CONCEPTS:
        for s in scenes(c, PER_CONCEPT, TRAIN_SEED):
            images.append(s.original())
            prompts.append(c)
    return images, prompts


def build_tiny_scenes(dry_run: bool = False, recipe: TinyDiffusionRecipe | None = None) -> Path | None:
    """`tiny-scenes`: trained on every concept's drawn scenes."""
    images, prompts = scenes_training_set()
    return build_diffusion_cached("tiny-scenes", images, prompts, list(CONCEPTS), recipe or TinyDiffusionRecipe(),
                                  dry_run=dry_run)


TINY_SCENES = ModelSpec(
    name="tiny-scenes",
    kind="text-to-image",
    builder="tiny-scenes",
    dtype="float32",
    description="tiny pixel-space text-to-image model (IF-style pipeline) trained offline on drawn scenes",
)
