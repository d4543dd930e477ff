"""Drawn scenes for diffusion unlearning: a simple object on a textured background, offline.

One scene is the ForgetMe triple (benchmarks.md §4): `orig` (the object drawn on the
background), `bg` (the same background without it) and `mask` (the object's silhouette, 255 =
the region to forget). Objects are the concepts a prompt names ("<cat>", "<bird>", ...): each
has its own shape and colour, so a tiny text-to-image model can learn them in a couple of
minutes and a tiny detector can tell them apart. Everything comes from `random.Random(seed)`
(only `randrange`, stable across Python versions) and integer PIL drawing, so a scene is the
same picture on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

SIZE = 32  # pixels per side; the tiny model and the detector work at this size
CONCEPTS: tuple[str, ...] = ("<cat>", "<bird>", "<fish>", "<house>")

# Low-saturation background palettes (two tones each): the objects stand out from all of them.
PALETTES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((112, 140, 96), (92, 118, 80)),     # grass
    ((150, 150, 156), (128, 128, 136)),  # concrete
    ((176, 160, 128), (150, 136, 108)),  # sand
    ((96, 120, 150), (80, 100, 128)),    # dusk
)
TEXTURES: tuple[str, ...] = ("stripes", "checker", "dots", "gradient")


@dataclass(frozen=True)
class Scene:
    """One drawn scene: its concept, background texture and object placement."""

    concept: str
    palette: int
    texture: str
    cx: int
    cy: int
    r: int  # object half-size in pixels
    phase: int  # texture offset

    def background(self) -> Any:
        from PIL import Image, ImageDraw

        a, b = PALETTES[self.palette]
        img = Image.new("RGB", (SIZE, SIZE), a)
        d = ImageDraw.Draw(img)
        if self.texture == "stripes":
            for x in range(-SIZE, SIZE, 6):
                d.polygon([(x + self.phase, 0), (x + self.phase + 3, 0), (x + self.phase + 3 + SIZE, SIZE),
                           (x + self.phase + SIZE, SIZE)], fill=b)
        elif self.texture == "checker":
            for y in range(0, SIZE, 4):
                for x in range(0, SIZE, 4):
                    if ((x + y) // 4 + self.phase) % 2:
                        d.rectangle([x, y, x + 3, y + 3], fill=b)
        elif self.texture == "dots":
            for y in range(self.phase % 5, SIZE, 5):
                for x in range((y // 5) % 2 * 2, SIZE, 5):
                    d.rectangle([x, y, x + 1, y + 1], fill=b)
        else:  # gradient: the second tone rises towards the bottom, in bands
            for y in range(SIZE):
                t = (y + self.phase) % SIZE
                c = tuple(a[i] + (b[i] - a[i]) * t // SIZE for i in range(3))
                d.line([(0, y), (SIZE - 1, y)], fill=c)
        return img

    def _draw_object(self, d: Any, fill: Any = None, detail: Any = None) -> None:
        """The concept's shapes; `fill`/`detail` override the colours (the mask draws in white)."""
        cx, cy, r = self.cx, self.cy, self.r
        if self.concept == "<cat>":  # orange round head, two ears, dark eyes
            body = fill or (236, 128, 32)
            d.polygon([(cx - r, cy - r // 3), (cx - r + 2, cy - r - 3), (cx - r // 3, cy - r + 1)], fill=body)
            d.polygon([(cx + r, cy - r // 3), (cx + r - 2, cy - r - 3), (cx + r // 3, cy - r + 1)], fill=body)
            d.ellipse([cx - r, cy - r + 1, cx + r, cy + r], fill=body)
            eye = detail or (30, 20, 10)
            d.rectangle([cx - r // 2 - 1, cy - 1, cx - r // 2, cy], fill=eye)
            d.rectangle([cx + r // 2, cy - 1, cx + r // 2 + 1, cy], fill=eye)
        elif self.concept == "<bird>":  # blue body, yellow beak, dark wing
            d.ellipse([cx - r, cy - r // 2, cx + r // 2, cy + r // 2], fill=fill or (40, 80, 230))
            d.ellipse([cx, cy - r, cx + r - 1, cy - r // 4], fill=fill or (40, 80, 230))
            d.polygon([(cx + r - 1, cy - r // 2 - 2), (cx + r + 3, cy - r // 2), (cx + r - 1, cy - r // 2 + 1)],
                      fill=fill or (250, 220, 40))
            d.polygon([(cx - r // 2, cy - 1), (cx + r // 4, cy - 1), (cx - r // 4, cy + r // 3)], fill=detail or (20, 30, 90))
        elif self.concept == "<fish>":  # magenta body, triangle tail
            d.ellipse([cx - r // 2, cy - r // 2, cx + r, cy + r // 2], fill=fill or (220, 40, 200))
            d.polygon([(cx - r // 2 + 1, cy), (cx - r, cy - r // 2), (cx - r, cy + r // 2)], fill=fill or (220, 40, 200))
            d.rectangle([cx + r // 2, cy - 2, cx + r // 2 + 1, cy - 1], fill=detail or (255, 255, 255))
        elif self.concept == "<house>":  # white walls, red roof, dark door
            d.rectangle([cx - r + 2, cy - r // 4, cx + r - 2, cy + r], fill=fill or (245, 245, 240))
            d.polygon([(cx - r, cy - r // 4), (cx, cy - r - 1), (cx + r, cy - r // 4)], fill=fill or (210, 30, 30))
            d.rectangle([cx - 1, cy + r // 3, cx + 1, cy + r], fill=detail or (60, 40, 30))

    def original(self) -> Any:
        from PIL import ImageDraw

        img = self.background()
        self._draw_object(ImageDraw.Draw(img))
        return img

    def mask(self) -> Any:
        """The object's silhouette: 255 inside (the region to forget), 0 outside."""
        from PIL import Image, ImageDraw

        m = Image.new("L", (SIZE, SIZE), 0)
        self._draw_object(ImageDraw.Draw(m), fill=255, detail=255)
        return m


def draw_scene(concept: str, rng: random.Random) -> Scene:
    """A random scene of `concept`: palette, texture, position and size drawn from `rng`."""
    r = 6 + rng.randrange(3)
    margin = r + 4
    return Scene(concept=concept, palette=rng.randrange(len(PALETTES)), texture=TEXTURES[rng.randrange(len(TEXTURES))],
                 cx=margin + rng.randrange(SIZE - 2 * margin + 1), cy=margin + rng.randrange(SIZE - 2 * margin + 1),
                 r=r, phase=rng.randrange(6))


def scenes(concept: str, n: int, seed: int) -> list[Scene]:
    """`n` scenes of one concept; the same (concept, n, seed) gives the same scenes."""
    rng = random.Random(f"{seed}:{concept}")
    return [draw_scene(concept, rng) for _ in range(n)]


def backgrounds(n: int, seed: int) -> list[Scene]:
    """`n` scenes without an object (concept "<none>" draws nothing): the detector's "none" class."""
    return scenes("<none>", n, seed)
