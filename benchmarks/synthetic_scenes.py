"""Diffusion unlearning benchmarks: `synthetic-scenes` (drawn offline) and `forgetme` (local data).

ForgetMe (benchmarks.md §4) forgets one concept of a text-to-image model ("<cat>") from
`{orig, bg, mask}` triples: the picture, the same picture without the object, the object's
mask. Both benchmarks give items of that shape (`SceneItem`) to the diffusion metrics:

  - `entangled_d@forget` / `entangled_s@forget`: the model re-renders each forget scene under
    the forget prompt (image-to-image from the original at `strength`, same seed for every
    model); Entangled compares that edit with the original inside and outside the mask;
  - `object_detected@forget` / `@retain`: the model draws each item's prompt from the item's
    seed; the project's detector (benchmarks/scenes_detector.py) says whether the object is
    there. Forget success is a low rate on the forget prompt; what must be kept is the rate on
    the other concepts' prompts (synthetic-scenes only: the detector knows only drawn objects).

`synthetic-scenes` draws its scenes (benchmarks/scenes_drawing.py, seed 2, never the tiny
model's training seed 1); `forgetme` reads a local directory of `{orig,bg,mask}/<stem>.<ext>`
(the authors have not released their data). Methods train on the forget split's triples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness.api.benchmark import Benchmark, BenchmarkData, SceneItem, check_limit
from harness.api.media import MediaRef
from harness.benchmarks.scenes_drawing import CONCEPTS, scenes
from harness.errors import ConfigError, DatasetUnavailableError
from harness.io import save_png_once

GENERATOR_VERSION = "v1"
SCENE_SEED = 2  # the benchmark's scenes; the tiny model trains on seed 1, the detector on 7
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class SceneUnlearningBenchmark(Benchmark):
    """Forget one concept of a text-to-image model; shared by synthetic-scenes and forgetme."""

    model_kind = "text-to-image"
    request_kinds = ("generate_image",)
    option_help = {
        "forget_split": None, "retain_split": None, "holdout_split": None,
        "concept": "the prompt to forget (default <cat>)",
        "steps": "denoising steps per generation (default 20)",
        "guidance_scale": "classifier-free guidance scale (default 4.0)",
        "strength": "image-to-image strength of the Entangled edits, in (0, 1] (default 0.6)",
        "fid_features_path": "a TorchScript feature extractor for `fid` (float pictures N,3,H,W in [0,1] -> N,D); none: no FID",
        "clip_model_path": "a local CLIP checkpoint for `clip_distance`; none: no CLIP distance",
        "entangled_s_in": "S_in of Entangled-D: `code` (1 - RMSE, the reference code) or `change` (RMSE); metrics.md §13",
    }
    # ForgetMe's README table (FID, CLIP distance, Entangled-D, Entangled-S); FID and CLIP distance
    # show "—" unless the user gives their weights (fid_features_path, clip_model_path).
    default_metrics: ClassVar[tuple[str, ...]] = ("fid@forget", "clip_distance@forget", "entangled_d@forget",
                                                  "entangled_s@forget")
    headline_metrics: ClassVar[tuple[str, ...]] = default_metrics
    steps: ClassVar[int] = 20
    guidance_scale: ClassVar[float] = 4.0
    strength: ClassVar[float] = 0.6

    def forget_split(self) -> str:
        return "forget"

    def retain_split(self) -> str:
        return "retain"

    def holdout_split(self) -> str:
        raise ConfigError(f"benchmark {self.name!r} has no holdout split")

    def concept(self) -> str:
        concept = self.options.get("concept", "<cat>")
        if not isinstance(concept, str) or not concept.strip():
            raise ConfigError(f"benchmark {self.name!r}: option `concept` must be a non-empty prompt, got {concept!r}")
        return concept

    def generation(self) -> dict[str, Any]:
        """steps, guidance_scale, strength: the class defaults, overridden by options."""
        out = {"steps": self.steps, "guidance_scale": self.guidance_scale, "strength": self.strength}
        for key, kind in (("steps", int), ("guidance_scale", float), ("strength", float)):
            if key in self.options:
                v = self.options[key]
                ok = not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0 and (kind is float or isinstance(v, int))
                if not ok or (key == "strength" and v > 1):
                    raise ConfigError(f"benchmark {self.name!r}: option `{key}` must be a positive "
                                      f"{'integer' if kind is int else 'number'}{' <= 1' if key == 'strength' else ''}, got {v!r}")
                out[key] = kind(v)
        return out

    def entangled_s_in(self) -> str:
        mode = self.options.get("entangled_s_in", "code")
        if mode not in ("code", "change"):
            raise ConfigError(f"benchmark {self.name!r}: option `entangled_s_in` must be `code` or `change`, got {mode!r}")
        return mode

    def prompt(self, item: SceneItem) -> str:  # type: ignore[override]
        return item.prompt

    def target(self, answer: str) -> str:
        return ""

    def detect(self, images: list[Any]) -> list[dict[str, float]]:
        """Per image, the detector's probability of each concept it knows."""
        raise ConfigError(f"benchmark {self.name!r} has no object detector (object_detected needs synthetic-scenes)")


class SyntheticScenes(SceneUnlearningBenchmark):
    """synthetic-scenes: drawn `{orig, bg, mask}` triples of simple objects on textured backgrounds.

    Splits: `forget` (scenes of the forget concept, default "<cat>") and `retain` (scenes of
    every other concept). Options: `concept`, `n_forget` (default 16), `n_retain` per other
    concept (default 8), `limit`, and the generation settings.
    """

    name = "synthetic-scenes"
    option_help = {
        "n_forget": "scenes of the forget concept (default 16)",
        "n_retain": "scenes of each other concept (default 8)",
        "limit": "at most this many items per split (the run's --limit sets it)",
    }
    default_metrics = (*SceneUnlearningBenchmark.default_metrics, "object_detected@forget", "object_detected@retain")
    headline_metrics = default_metrics

    def load(self) -> BenchmarkData:
        from harness.io import cache_dir

        concept = self.concept()
        if concept not in CONCEPTS:
            raise ConfigError(f"benchmark {self.name!r}: concept {concept!r} is not drawn here (concepts: {', '.join(CONCEPTS)})")
        n_forget, n_retain = (_count(self.options, k, d) for k, d in (("n_forget", 16), ("n_retain", 8)))
        limit = check_limit(self.options.get("limit"))
        folder = cache_dir() / "data" / f"synthetic-scenes-{GENERATOR_VERSION}"
        splits: dict[str, list[SceneItem]] = {"forget": [], "retain": []}
        for c in CONCEPTS:
            n = n_forget if c == concept else n_retain
            for k, scene in enumerate(scenes(c, n, SCENE_SEED)):
                stem = f"{c.strip('<>')}-{k:03d}"
                refs = {part: MediaRef.from_path(save_png_once(folder / part / f"{stem}.png", image))
                        for part, image in (("orig", scene.original()), ("bg", scene.background()), ("mask", scene.mask()))}
                item = SceneItem(id=stem, prompt=c, concept=c, seed=1000 + k, **refs)
                splits["forget" if c == concept else "retain"].append(item)
        if limit is not None:
            splits = {k: v[:limit] for k, v in splits.items()}
        return BenchmarkData(splits=splits, source=f"generated:synthetic-scenes@{GENERATOR_VERSION}",
                             meta={"concept": concept, "n_forget": n_forget, "n_retain": n_retain, "seed": SCENE_SEED})

    def detect(self, images: list[Any]) -> list[dict[str, float]]:
        from harness.benchmarks.scenes_detector import detect

        return detect(images)


class ForgetMe(SceneUnlearningBenchmark):
    """forgetme: ForgetMe triples from a local directory (`path`): `orig/`, `bg/`, `mask/`, one
    file per stem in each (`orig/` optional: without it only Entangled-S runs). The authors
    have not released their data (benchmarks.md §4). Options: `path`, `concept`, `limit`."""

    name = "forgetme"
    option_help = {"path": "a directory with bg/ and mask/ (and optionally orig/) holding <stem>.<ext> images",
                   "limit": "at most this many triples"}

    def load(self) -> BenchmarkData:
        path = self.options.get("path")
        how = ("the ForgetMe data is not released (benchmarks.md §4); give `path` to a local directory of "
               "{orig,bg,mask}/<stem>.<ext> triples")
        if not path:
            raise DatasetUnavailableError(f"forgetme: {how}")
        root = Path(str(path)).expanduser()
        parts = {p: _index(root / p) for p in ("orig", "bg", "mask")}
        if not parts["bg"] or not parts["mask"]:
            raise DatasetUnavailableError(f"forgetme: {root} has no images in bg/ and mask/; {how}")
        stems = sorted(set(parts["bg"]) & set(parts["mask"]))
        if not stems:
            raise DatasetUnavailableError(f"forgetme: no stem of {root}/bg has a mask in {root}/mask; {how}")
        concept = self.concept()
        items = [SceneItem(id=stem, prompt=concept, concept=concept, seed=1000 + k,
                           bg=MediaRef.from_path(parts["bg"][stem]), mask=MediaRef.from_path(parts["mask"][stem]),
                           orig=MediaRef.from_path(parts["orig"][stem]) if stem in parts["orig"] else None)
                 for k, stem in enumerate(stems)]
        limit = check_limit(self.options.get("limit"))
        if limit is not None:
            items = items[:limit]
        return BenchmarkData(splits={"forget": items}, source=f"local:{root}",
                             meta={"concept": concept, "n": len(items), "with_orig": sum(i.orig is not None for i in items)})


def _index(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS}


def _count(options: dict[str, Any], key: str, default: int) -> int:
    v = options.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"option `{key}` must be a positive integer, got {v!r}")
    return v


