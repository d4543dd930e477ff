"""tiny-vqa: an UnLOK-VQA-shaped data set about drawn invented objects, built offline.

The stand-in for UnLOK-VQA (docs/datasets.md §2) that needs no download and runs on the tiny
`tiny-vqa` VLM (benchmarks/tiny_vqa_models.py). A small world of 28 invented object kinds, each
drawn as a 32x32 icon: a shape (circle, square, triangle, cross) in a colour (7 clearly
different hues) with a pattern (plain, stripes, dots), so shape and colour alone tell any two
kinds apart. Every kind has a made-up one-word name and two facts with one-word answers that
the picture does NOT show (where it is made, what it is used for): the model has to recognise
the object and recall the fact, as UnLOK-VQA's OK-VQA questions need knowledge beyond the
pixels. An instance is one (kind, fact); deleting it must keep the neighbourhood (the visible
colour and shape, and the kind's other fact).

Images: the scene of a kind is a canonical render (centred, medium size, plain grey
background); its image paraphrases are re-renders with their own seeds: `easy` (same size and
background, shifted), `medium` (other size and background), `hard` (other size, position and
background, plus clutter specks and pixel noise). The model's training renders use other
seeds again (`render(kind, seed_key)` with "train:*" keys), so no paraphrase image is trained.
Everything comes from `random.Random(<str seed>)` (only `randrange`) and integer PIL drawing,
so images and text are identical on every machine. All names and words are invented here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from harness.api.benchmark import Benchmark, BenchmarkData, ImageQAItem, check_limit
from harness.api.edit import IMAGE_LEVELS, EditInstance
from harness.api.media import MediaRef
from harness.benchmarks.unlok_attacks import UnlokProtocol
from harness.errors import ConfigError
from harness.io import save_png_once

BENCH = "tiny-vqa"
GENERATOR_VERSION = "v1"
SEED = 20261204
SIZE = 32
DEFAULT_INSTANCES = 24

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30), "green": (30, 180, 50), "blue": (40, 70, 235), "yellow": (245, 215, 20),
    "purple": (150, 40, 210), "orange": (250, 130, 20), "white": (250, 250, 250),
}
PATTERNS = ("plain", "stripes", "dots")
# Muted backgrounds (two tones each): every object colour stands out from all of them.
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "grey": ((120, 120, 120), (120, 120, 120)),
    "sand": ((150, 138, 110), (132, 120, 96)),
    "moss": ((86, 104, 80), (72, 90, 66)),
    "slate": ((78, 88, 108), (64, 74, 94)),
    "clay": ((122, 92, 84), (104, 78, 70)),
}
CANONICAL_BACKGROUND = "grey"

# Invented words (this project's own): object names, places of make, uses.
NAMES = ("Quorble Tamsick Vellop Drumlet Flinxo Gorrin Hobbet Jastle Kimbra Lurrow Mopsel Nibbet Orrik Plimsy "
         "Quenzel Rattock Sprindle Tovvin Umbrik Vistle Wobbin Yarrop Zellick Bramsy Cortle Dwindel Fesky Grummet"
         ).split()
PLACES = ("Ostrand Keswold Tilbeck Varnholm Quensby Drellmoor Fenwark Halstow Brackwyn Ulmsted Corriford "
          "Mirrowick").split()
USES = ("fishing knitting baking painting sailing gardening juggling weaving climbing polishing stargazing "
        "drumming").split()


@dataclass(frozen=True)
class FactType:
    key: str
    pool: tuple[str, ...]
    question: str
    rephrasings: tuple[str, str, str, str]


FACT_TYPES: tuple[FactType, ...] = (
    FactType("made", tuple(PLACES), "Where is this object made?",
             ("In which town is the object in the picture made?", "Where does this object come from?",
              "What place is the object shown here made in?", "Where was this thing manufactured?")),
    FactType("use", tuple(USES), "What is this object used for?",
             ("What activity is the object in the picture for?", "What do people use this object for?",
              "For what is the thing shown here used?", "What is the purpose of this object?")),
)
COLOUR_QUESTION = "What colour is the object in the picture?"
SHAPE_QUESTION = "What shape is this object?"
NAME_QUESTION = "What is this object called?"


@dataclass(frozen=True)
class ObjectKind:
    index: int
    name: str
    shape: str
    colour: str
    pattern: str
    facts: tuple[str, ...]  # one answer per FACT_TYPES entry
    wrong: tuple[str, ...]  # one other answer of the same type per FACT_TYPES entry

    def caption(self) -> str:
        pattern = "" if self.pattern == "plain" else ("striped " if self.pattern == "stripes" else "dotted ")
        return f"A {pattern}{self.colour} {self.shape} called {self.name}."


@dataclass(frozen=True)
class Render:
    """Where and how one picture of a kind is drawn."""

    kind: int
    cx: int
    cy: int
    r: int  # half-size in pixels
    background: str
    phase: int
    clutter: int = 0  # number of small clutter specks
    noise: int = 0  # pixel-noise amplitude (0: none)
    noise_seed: str = ""


@lru_cache(maxsize=None)
def object_kinds() -> tuple[ObjectKind, ...]:
    """The 28 kinds: every (colour, shape) pair once, a pattern each, facts drawn from the pools."""
    rng = random.Random(f"{SEED}:kinds")
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    order = list(range(len(pairs)))
    for i in range(len(order) - 1, 0, -1):  # Fisher-Yates with randrange only (stable across versions)
        j = rng.randrange(i + 1)
        order[i], order[j] = order[j], order[i]
    kinds = []
    for i, p in enumerate(order):
        colour, shape = pairs[p]
        facts, wrong = [], []
        for ft in FACT_TYPES:
            value = ft.pool[rng.randrange(len(ft.pool))]
            other = value
            while other == value:
                other = ft.pool[rng.randrange(len(ft.pool))]
            facts.append(value)
            wrong.append(other)
        kinds.append(ObjectKind(i, NAMES[i], shape, colour, PATTERNS[rng.randrange(len(PATTERNS))],
                                tuple(facts), tuple(wrong)))
    return tuple(kinds)


def canonical_render(kind: int) -> Render:
    return Render(kind, SIZE // 2, SIZE // 2, 9, CANONICAL_BACKGROUND, 0)


def random_render(kind: int, seed_key: str, level: str = "train") -> Render:
    """A re-render of `kind` drawn from `random.Random(seed_key)`. Levels: `easy` keeps the
    canonical size and background and shifts the object; `medium` changes size and background
    (roughly centred); `hard` and `train` change size, position and background, and `hard`
    adds clutter and pixel noise (`train` adds them half the time)."""
    rng = random.Random(f"{SEED}:{seed_key}:{kind}")
    others = [b for b in BACKGROUNDS if b != CANONICAL_BACKGROUND]
    canon = canonical_render(kind)
    if level == "easy":
        r, bg = canon.r, CANONICAL_BACKGROUND
        while True:
            dx, dy = rng.randrange(9) - 4, rng.randrange(9) - 4
            if abs(dx) + abs(dy) >= 3:
                break
        return Render(kind, canon.cx + dx, canon.cy + dy, r, bg, rng.randrange(4))
    r = 6 + rng.randrange(6)
    if r == canon.r:
        r += 1
    if level == "medium":
        return Render(kind, canon.cx + rng.randrange(3) - 1, canon.cy + rng.randrange(3) - 1, r,
                      others[rng.randrange(len(others))], rng.randrange(4))
    margin = r + 1
    cx = margin + rng.randrange(SIZE - 2 * margin)
    cy = margin + rng.randrange(SIZE - 2 * margin)
    if level == "hard":
        bg = others[rng.randrange(len(others))]
        return Render(kind, cx, cy, r, bg, rng.randrange(4), clutter=3 + rng.randrange(3), noise=24,
                      noise_seed=f"{seed_key}:{kind}")
    bg = list(BACKGROUNDS)[rng.randrange(len(BACKGROUNDS))]
    messy = rng.randrange(2) == 1
    return Render(kind, cx, cy, r, bg, rng.randrange(4), clutter=(2 + rng.randrange(3)) if messy else 0,
                  noise=16 if messy else 0, noise_seed=f"{seed_key}:{kind}")


def _shape_polygon(shape: str, cx: int, cy: int, r: int) -> list[tuple[int, int]] | None:
    if shape == "triangle":
        return [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
    if shape == "cross":
        w = max(2, r // 3)
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
                (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
                (cx - r, cy - w), (cx - w, cy - w)]
    return None


def _draw_shape(d: Any, shape: str, cx: int, cy: int, r: int, fill: Any) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle([cx - r + 1, cy - r + 1, cx + r - 1, cy + r - 1], fill=fill)
    else:
        d.polygon(_shape_polygon(shape, cx, cy, r), fill=fill)


def draw(render: Render) -> Any:
    """The picture of one render: a 32x32 PIL RGB image."""
    from PIL import Image, ImageChops, ImageDraw

    kind = object_kinds()[render.kind]
    a, b = BACKGROUNDS[render.background]
    img = Image.new("RGB", (SIZE, SIZE), a)
    d = ImageDraw.Draw(img)
    if a != b:  # a faint diagonal texture
        for x in range(-SIZE, SIZE, 6):
            p = x + render.phase
            d.polygon([(p, 0), (p + 2, 0), (p + 2 + SIZE, SIZE), (p + SIZE, SIZE)], fill=b)
    rng = random.Random(f"{SEED}:clutter:{render.noise_seed}")
    for _ in range(render.clutter):  # small grey / brown specks away from the object's centre
        x, y = rng.randrange(SIZE - 2), rng.randrange(SIZE - 2)
        if abs(x - render.cx) < render.r and abs(y - render.cy) < render.r:
            continue
        tone = (60 + rng.randrange(80), 60 + rng.randrange(60), 50 + rng.randrange(50))
        d.rectangle([x, y, x + 1 + rng.randrange(2), y + 1 + rng.randrange(2)], fill=tone)
    colour = COLOURS[kind.colour]
    _draw_shape(d, kind.shape, render.cx, render.cy, render.r, colour)
    if kind.pattern != "plain":  # the pattern, in a darker shade, clipped to the shape
        dark = tuple(c * 2 // 5 for c in colour)
        mask = Image.new("L", (SIZE, SIZE), 0)
        _draw_shape(ImageDraw.Draw(mask), kind.shape, render.cx, render.cy, render.r, 255)
        layer = Image.new("RGB", (SIZE, SIZE), colour)
        ld = ImageDraw.Draw(layer)
        if kind.pattern == "stripes":
            for y in range(render.cy - render.r + 1, render.cy + render.r, 3):
                ld.line([(0, y), (SIZE - 1, y)], fill=dark)
        else:
            for y in range(render.cy - render.r + 1, render.cy + render.r, 3):
                for x in range(render.cx - render.r + 1 + (y % 2), render.cx + render.r, 3):
                    ld.point((x, y), fill=dark)
        img.paste(layer, (0, 0), mask)
    if render.noise:
        noise = Image.new("RGB", (SIZE, SIZE))
        amp = render.noise
        noise.putdata([tuple(rng.randrange(amp) for _ in range(3)) for _ in range(SIZE * SIZE)])
        img = ImageChops.subtract(ImageChops.add(img, noise), Image.new("RGB", (SIZE, SIZE), (amp // 2,) * 3))
    return img


def paraphrase_render(kind: int, level: str) -> Render:
    """The `level` image paraphrase of a kind's scene (seeds "para-<level>", never trained)."""
    return random_render(kind, f"para-{level}", level)


def training_renders(kind: int, n: int) -> list[Render]:
    """`n` training re-renders of a kind (seeds "train-<j>", disjoint from the paraphrases')."""
    return [random_render(kind, f"train-{j}", "train") for j in range(n)]


# --- instances -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Instance:
    """One deletable fact: kind `kind`, fact type `fact` (index into FACT_TYPES)."""

    kind: int
    fact: int

    @property
    def id(self) -> str:
        return f"tvqa-{self.kind:02d}-{FACT_TYPES[self.fact].key}"


@lru_cache(maxsize=None)
def all_instances() -> tuple[Instance, ...]:
    """Every (kind, fact), ordered so that any prefix spreads over the kinds: first one fact of
    every kind (alternating types), then the other."""
    n = len(object_kinds())
    return tuple(Instance(k, (k + r) % len(FACT_TYPES)) for r in range(len(FACT_TYPES)) for k in range(n))


def neighborhood(kind: ObjectKind, fact: int) -> tuple[tuple[str, str], ...]:
    """Questions about the same picture the deletion must keep: colour, shape, the other fact."""
    other = 1 - fact
    return ((COLOUR_QUESTION, kind.colour), (SHAPE_QUESTION, kind.shape),
            (FACT_TYPES[other].question, kind.facts[other]))


def check_n_instances(value: Any) -> int:
    total = len(all_instances())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= total:
        raise ConfigError(f"{BENCH}: option `n_instances` must be an integer from 1 to {total}, got {value!r}")
    return value


def image_dir() -> Path:
    """Where the drawn pictures are kept: `<cache>/data/tiny-vqa/<version>/` (written once)."""
    from harness.io import cache_dir

    return cache_dir() / "data" / BENCH / GENERATOR_VERSION


def _ref(name: str, render: Render) -> MediaRef:
    return MediaRef.from_path(save_png_once(image_dir() / f"{name}.png", draw(render)))


def edit_instances(n_instances: int = DEFAULT_INSTANCES) -> list[EditInstance]:
    """The first `n_instances` instances as EditInstance (images written once under the cache)."""
    n = check_n_instances(n_instances)
    kinds = object_kinds()
    out = []
    for inst in all_instances()[:n]:
        kind, ft = kinds[inst.kind], FACT_TYPES[inst.fact]
        scene = _ref(f"kind-{inst.kind:02d}", canonical_render(inst.kind))
        paras = tuple((lv, _ref(f"kind-{inst.kind:02d}-{lv}", paraphrase_render(inst.kind, lv))) for lv in IMAGE_LEVELS)
        out.append(EditInstance(
            id=inst.id, question=ft.question, answer=kind.facts[inst.fact], images=(scene,),
            rephrasings=ft.rephrasings, neighborhood=neighborhood(kind, inst.fact), image_paraphrases=paras,
            subject=kind.name, wrong_answer=kind.wrong[inst.fact]))
    return out


class TinyVQA(UnlokProtocol, Benchmark):
    """tiny-vqa as a benchmark: UnLOK-VQA's per-instance deletion on drawn invented objects.

    Splits: `forget` (one item per instance: the fact question, its one-word answer, the
    object's scene) and `neighborhood` (each instance's neighbourhood questions about the same
    scene, id `<id>-loc<j>`). Run per instance (`edit_instances()`), as unlok-vqa.
    """

    name = "tiny-vqa"
    model_kind = "image-text-to-text"
    per_instance: ClassVar[bool] = True
    max_new_tokens = 36
    default_metrics = ()
    option_help = {
        **UnlokProtocol.protocol_options,
        "n_instances": f"how many instances (facts to delete), the first N of {2 * len(NAMES)}, spread over "
                       f"the object kinds (default {DEFAULT_INSTANCES}); `limit` caps it too",
        "forget_split": None, "retain_split": None, "holdout_split": None,
    }

    def n_instances(self) -> int:
        n = check_n_instances(self.options.get("n_instances", DEFAULT_INSTANCES))
        limit = check_limit(self.options.get("limit"))
        return n if limit is None else min(n, limit)

    def edit_instances(self) -> list[EditInstance]:
        n = self.n_instances()
        return edit_instances(n) if n > 0 else []

    def load(self) -> BenchmarkData:
        forget, neigh = [], []
        for inst in self.edit_instances():
            forget.append(ImageQAItem(id=inst.id, question=inst.question, answer=inst.answer, entity=inst.subject,
                                      question_paraphrases=inst.rephrasings, images=inst.images))
            neigh += [ImageQAItem(id=f"{inst.id}-loc{j}", question=q, answer=a, entity=inst.id, images=inst.images)
                      for j, (q, a) in enumerate(inst.neighborhood)]
        meta = {"generator_version": GENERATOR_VERSION, "seed": SEED, "n_kinds": len(object_kinds()),
                "n_instances": len(forget), "limit": self.options.get("limit")}
        return BenchmarkData(splits={"forget": forget, "neighborhood": neigh},
                             source=f"generated:tiny-vqa@{GENERATOR_VERSION}", meta=meta)
