"""Yes/no questions about drawn shapes: the project's stand-in for FIUBench's MME/POPE "ACC".

Each scene is 1-3 coloured shapes in distinct cells of a 2x2 grid; each scene gets three
questions (is there a red shape / a circle / exactly N shapes), drawn so yes and no come out
about equally often. `train` scenes are trained into the tiny face models, `test` scenes (fresh)
are fictitious-faces' held-out `visual` split, scored by the `fiu_acc` metric. Everything comes
from `random.Random` with fixed seeds and integer drawing, so it is identical on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from harness.benchmarks.face_drawing import IMAGE_SIZE  # the faces' size: the same VLM sees both


SHAPE_COLOURS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 70, 230), "yellow": (240, 210, 20)}
SHAPES = ("circle", "square", "triangle")
VISUAL_SEEDS = {"train": 7001, "test": 7002}
N_SCENES = {"train": 120, "test": 60}


@dataclass(frozen=True)
class Scene:
    """1-3 shapes at distinct cells of a 2x2 grid: (shape, colour, cell), cell in 0..3."""

    index: int
    split: str
    objects: tuple[tuple[str, str, int], ...]

    def image(self, size: int = IMAGE_SIZE):
        return draw_scene(self, size)

    @property
    def scene_id(self) -> str:
        return f"scene-{self.split}-{self.index:03d}"


@dataclass(frozen=True)
class VisualQA:
    id: str
    scene: Scene
    question: str
    answer: str  # "Yes" or "No"
    kind: str  # colour / shape / count
    extra: dict = field(default_factory=dict, compare=False)


def draw_scene(scene: Scene, size: int = IMAGE_SIZE):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    cell = size // 2
    for shape, colour, pos in scene.objects:
        x0, y0 = (pos % 2) * cell + 2, (pos // 2) * cell + 2
        x1, y1 = x0 + cell - 4, y0 + cell - 4
        fill = SHAPE_COLOURS[colour]
        if shape == "circle":
            d.ellipse([x0, y0, x1, y1], fill=fill)
        elif shape == "square":
            d.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            d.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=fill)
    return img


@lru_cache(maxsize=None)
def scenes(split: str) -> tuple[Scene, ...]:
    from harness.errors import ConfigError

    if split not in VISUAL_SEEDS:
        raise ConfigError(f"fictitious-faces visual questions have no split {split!r} (has: train, test)")
    rng = random.Random(VISUAL_SEEDS[split])
    out = []
    for i in range(N_SCENES[split]):
        n = 1 + rng.randrange(3)
        cells: list[int] = []
        while len(cells) < n:
            c = rng.randrange(4)
            if c not in cells:
                cells.append(c)
        objs = tuple((SHAPES[rng.randrange(3)], list(SHAPE_COLOURS)[rng.randrange(4)], c) for c in cells)
        out.append(Scene(i, split, objs))
    return tuple(out)


@lru_cache(maxsize=None)
def visual_questions(split: str) -> tuple[VisualQA, ...]:
    """Three yes/no questions per scene (one each about colour, shape and count); each asks
    about a value drawn so that yes and no come out about equally often."""
    rng = random.Random(VISUAL_SEEDS[split] + 1)
    out: list[VisualQA] = []
    for sc in scenes(split):
        colours = {c for _, c, _ in sc.objects}
        shapes = {s for s, _, _ in sc.objects}
        want_yes = [rng.randrange(2) == 0 for _ in range(3)]
        # colour
        pool = sorted(colours) if want_yes[0] else sorted(set(SHAPE_COLOURS) - colours)
        colour = pool[rng.randrange(len(pool))] if pool else sorted(colours)[0]
        out.append(VisualQA(f"{sc.scene_id}-colour", sc, f"Is there a {colour} shape in the image?",
                            "Yes" if colour in colours else "No", "colour"))
        pool = sorted(shapes) if want_yes[1] else sorted(set(SHAPES) - shapes)
        shape = pool[rng.randrange(len(pool))] if pool else sorted(shapes)[0]
        out.append(VisualQA(f"{sc.scene_id}-shape", sc, f"Is there a {shape} in the image?",
                            "Yes" if shape in shapes else "No", "shape"))
        n = len(sc.objects)
        others = [k for k in (1, 2, 3) if k != n]
        count = n if want_yes[2] else others[rng.randrange(2)]
        question = {1: "Is there exactly one shape in the image?", 2: "Are there exactly two shapes in the image?",
                    3: "Are there exactly three shapes in the image?"}[count]
        out.append(VisualQA(f"{sc.scene_id}-count", sc, question,
                            "Yes" if count == n else "No", "count"))
    return tuple(out)
