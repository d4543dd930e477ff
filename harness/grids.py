"""Before/after image grids of a text-to-image cell: what a user looks at first.

For each prompt a cell's metrics drew (text-to-image requests, not the edits), one row: up to
`per_prompt` generations of the base model ("before"), a gap, then the same seeds under the
cell's model ("after"). Written as `grid.png` next to the cell's results. Both sides come
through the cached backends, so after an evaluation (and the method-less cell for "before")
the grid costs no model call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CELL = 32  # pixels per picture in the grid (pictures are resized to it, nearest neighbour)
SCALE = 3
LABEL_W = 64


def grid_requests(requests: list[Any], per_prompt: int = 4) -> dict[str, list[Any]]:
    """Prompt -> its first `per_prompt` text-to-image requests (by seed), in first-seen order."""
    out: dict[str, list[Any]] = {}
    for r in requests:
        if getattr(r, "kind", "") != "generate_image" or r.init_image is not None:
            continue
        row = out.setdefault(r.prompt, [])
        if len(row) < per_prompt and r not in row:
            row.append(r)
    return {p: sorted(rs, key=lambda r: r.seed) for p, rs in out.items()}


def write_grid(path: Path, requests: list[Any], after: Any, before: Any | None, per_prompt: int = 4) -> Path | None:
    """Write the grid of `requests` answered by `before` (None: only "after") and `after`."""
    from PIL import Image, ImageDraw

    rows = grid_requests(requests, per_prompt)
    if not rows:
        return None
    flat = [r for rs in rows.values() for r in rs]
    sides = [("after", after.run(flat))]
    if before is not None:
        sides.insert(0, ("before", before.run(flat)))
    answers = {name: dict(zip(flat, resp)) for name, resp in sides}
    cols = per_prompt * len(sides) + (len(sides) - 1)
    width, height = LABEL_W + cols * CELL * SCALE, (len(rows) + 1) * CELL * SCALE
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for s, (name, _) in enumerate(sides):
        draw.text((LABEL_W + s * (per_prompt + 1) * CELL * SCALE + 4, CELL * SCALE // 2), name, fill=(0, 0, 0))
    for row, (prompt, rs) in enumerate(rows.items(), start=1):
        draw.text((4, row * CELL * SCALE + CELL * SCALE // 2), prompt[:10], fill=(0, 0, 0))
        for s, (name, _) in enumerate(sides):
            for k, r in enumerate(rs):
                im = answers[name][r].images[0].open_image().resize((CELL * SCALE, CELL * SCALE), Image.NEAREST)
                grid.paste(im, (LABEL_W + (s * (per_prompt + 1) + k) * CELL * SCALE, row * CELL * SCALE))
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    from harness.io import atomic_write_bytes

    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
