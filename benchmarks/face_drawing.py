"""fictitious-faces' pictures: a face's features, drawn with PIL shapes at integer coordinates
(identical bytes on every machine), and how far apart two faces are.

The persons and their facts are `benchmarks/fictitious_faces.py`'s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

IMAGE_SIZE = 64  # drawn size (faces, and the shape questions' scenes); processors resize to the model's input

SKINS = {"pale": (247, 220, 196), "light": (232, 190, 150), "tan": (198, 144, 98),
         "brown": (141, 85, 52), "dark": (92, 56, 36)}
HAIR_COLOURS = {"black": (20, 20, 20), "blond": (240, 210, 90), "red": (200, 60, 20),
                "grey": (160, 160, 160), "blue": (40, 90, 230), "brown": (110, 60, 20)}
EYE_COLOURS = {"brown": (90, 50, 10), "blue": (30, 110, 255), "green": (20, 170, 40), "violet": (150, 40, 200)}
BACKGROUNDS = {"white": (250, 250, 250), "sky": (150, 200, 255), "mint": (170, 240, 180),
               "peach": (255, 200, 160), "lilac": (210, 180, 250), "slate": (90, 100, 120)}
FACE_SHAPES = ("oval", "round", "square")
HAIR_STYLES = ("short", "long", "bald")
ACCESSORIES = ("none", "glasses", "hat", "beard", "earrings")
FEATURES = ("face_shape", "skin", "hair_colour", "hair_style", "eye_colour", "background", "accessory")


@dataclass(frozen=True)
class FaceSpec:
    face_shape: str
    skin: str
    hair_colour: str
    hair_style: str
    eye_colour: str
    background: str
    accessory: str

    def features(self) -> tuple[str, ...]:
        return tuple(getattr(self, f) for f in FEATURES)

    def caption(self) -> str:
        hair = "no hair" if self.hair_style == "bald" else f"{self.hair_style} {self.hair_colour} hair"
        extra = "" if self.accessory == "none" else f", wearing {_ACCESSORY_WORDS[self.accessory]}"
        return (f"A drawn portrait of a person with a {self.face_shape} {self.skin} face, {hair} and "
                f"{self.eye_colour} eyes{extra}, on a {self.background} background.")


_ACCESSORY_WORDS = {"glasses": "glasses", "hat": "a hat", "beard": "a beard", "earrings": "earrings"}


def draw_face(spec: FaceSpec, size: int = IMAGE_SIZE):
    """The person's picture: a PIL RGB image of `size` x `size` (integer geometry: deterministic)."""
    from PIL import Image, ImageDraw

    s = size / 64.0

    def box(x0: float, y0: float, x1: float, y1: float) -> list[int]:
        return [round(x0 * s), round(y0 * s), round(x1 * s), round(y1 * s)]

    img = Image.new("RGB", (size, size), BACKGROUNDS[spec.background])
    d = ImageDraw.Draw(img)
    skin, hair = SKINS[spec.skin], HAIR_COLOURS[spec.hair_colour]
    face = {"oval": (18, 12, 46, 56), "round": (14, 14, 50, 52), "square": (16, 14, 48, 52)}[spec.face_shape]
    if spec.hair_style == "long":  # hair behind the face, down to the shoulders
        d.rectangle(box(face[0] - 5, face[1] - 2, face[2] + 5, 62), fill=hair)
    d.rectangle(box(24, 50, 40, 64), fill=skin)  # neck
    if spec.face_shape == "square":
        d.rectangle(box(*face), fill=skin)
    else:
        d.ellipse(box(*face), fill=skin)
    if spec.hair_style in ("short", "long"):  # a cap of hair over the top of the head
        d.chord(box(face[0] - 1, face[1] - 4, face[2] + 1, face[1] + 22), 180, 360, fill=hair)
    eye = EYE_COLOURS[spec.eye_colour]
    for cx in (25, 39):
        d.ellipse(box(cx - 4, 27, cx + 4, 33), fill=(255, 255, 255))
        d.ellipse(box(cx - 2, 28, cx + 2, 32), fill=eye)
    d.line(box(32, 33, 32, 39), fill=tuple(max(0, c - 50) for c in skin), width=max(1, round(s)))  # nose
    d.arc(box(25, 38, 39, 46), 20, 160, fill=(150, 30, 40), width=max(1, round(2 * s)))  # mouth
    if spec.accessory == "glasses":
        for cx in (25, 39):
            d.rectangle(box(cx - 6, 25, cx + 6, 35), outline=(0, 0, 0), width=max(1, round(2 * s)))
        d.line(box(31, 29, 33, 29), fill=(0, 0, 0), width=max(1, round(2 * s)))
    elif spec.accessory == "hat":
        d.rectangle(box(10, 10, 54, 14), fill=(160, 20, 20))
        d.rectangle(box(18, 0, 46, 11), fill=(160, 20, 20))
    elif spec.accessory == "beard":
        d.chord(box(face[0] + 1, 34, face[2] - 1, face[3] + 3), 0, 180, fill=hair if spec.hair_style != "bald" else (60, 40, 20))
    elif spec.accessory == "earrings":
        for x in (face[0] - 1, face[2] - 3):
            d.ellipse(box(x, 38, x + 5, 43), fill=(255, 215, 0))
    return img


def random_face(rng: random.Random) -> FaceSpec:
    """A face drawn from the pools with `rng` (only `randrange`: stable across Python versions)."""
    return FaceSpec(
        face_shape=FACE_SHAPES[rng.randrange(len(FACE_SHAPES))],
        skin=list(SKINS)[rng.randrange(len(SKINS))],
        hair_colour=list(HAIR_COLOURS)[rng.randrange(len(HAIR_COLOURS))],
        hair_style=HAIR_STYLES[rng.randrange(len(HAIR_STYLES))],
        eye_colour=list(EYE_COLOURS)[rng.randrange(len(EYE_COLOURS))],
        background=list(BACKGROUNDS)[rng.randrange(len(BACKGROUNDS))],
        accessory=ACCESSORIES[rng.randrange(len(ACCESSORIES))],
    )


def feature_distance(a: FaceSpec, b: FaceSpec) -> int:
    """How many of the drawn features differ (hair colour does not count for bald persons,
    whose hair is not drawn; it still colours a beard)."""
    diff = 0
    for f in FEATURES:
        if f == "hair_colour" and a.hair_style == "bald" and b.hair_style == "bald" and "beard" not in (a.accessory, b.accessory):
            continue
        diff += getattr(a, f) != getattr(b, f)
    return diff
