"""Metrics of a text-to-image model on ForgetMe-style scenes (benchmarks/synthetic_scenes.py).

Each asks for seeded `ImageGenerationRequest`s (so they are cached and a rerun makes no model
call) and reads the pictures back from their content-addressed references:

  - `entangled_d` / `entangled_s`: the item's scene re-rendered under its prompt
    (image-to-image from the original, or from the background where a dataset has no
    original), scored against the mask with `harness.metrics.entangled` (docs/metrics.md §13);
  - `object_detected`: the item's prompt drawn from its seed; 1 when the benchmark's detector
    finds the item's concept (probability over 0.5). On the forget split it is the share of
    generations that still show the forgotten object (lower is better); elsewhere the share that
    keep theirs (higher is better).
"""

from __future__ import annotations

from typing import Any

from harness.api.benchmark import SceneItem
from harness.api.metric import ItemMetric, Metric, MetricResult, ResponseMap
from harness.api.requests import ImageGenerationRequest, Request
from harness.metrics.entangled import entangled, entangled_s, image_array, mask_array
from harness.stats import mean_ci

DETECTED = 0.5  # detector probability above which the object counts as found


def text_to_image_request(benchmark: Any, item: SceneItem) -> ImageGenerationRequest:
    g = benchmark.generation()
    return ImageGenerationRequest(prompt=benchmark.prompt(item), seed=item.seed, steps=g["steps"],
                                  guidance_scale=g["guidance_scale"])


def edit_request(benchmark: Any, item: SceneItem) -> ImageGenerationRequest | None:
    """The scene re-rendered under its prompt: image-to-image from the original (or the background)."""
    init = item.orig if item.orig is not None else item.bg
    if init is None:
        return None
    g = benchmark.generation()
    return ImageGenerationRequest(prompt=benchmark.prompt(item), seed=item.seed, steps=g["steps"],
                                  guidance_scale=g["guidance_scale"], init_image=init, strength=g["strength"])


class _EditMetric(ItemMetric):
    request_kinds = ("generate_image",)
    higher_is_better = True

    def item_requests(self, item: SceneItem) -> list[Request]:
        r = edit_request(self.benchmark, item)
        return [r] if r is not None else []

    def _edit(self, item: SceneItem, responses: ResponseMap) -> tuple[Any, Any, Any] | None:
        """(original or None, edited picture, mask) as arrays at the edited picture's size."""
        r = edit_request(self.benchmark, item)
        if r is None or item.mask is None:
            return None
        y_ref = responses[r].images[0]
        y = image_array(y_ref)
        size = (y.shape[1], y.shape[0])
        x = image_array(item.orig, size) if item.orig is not None else None
        return x, y, mask_array(item.mask, size)


class EntangledD(_EditMetric):
    """Entangled-D (paired): the forget-prompt edit against the original, inside and outside the
    mask, alpha = beta = 0.5; S_in as the benchmark's `entangled_s_in` option says."""

    name = "entangled_d"

    def item_value(self, item: SceneItem, responses: ResponseMap) -> float | None:
        if item.orig is None:
            return None  # unpaired data: only Entangled-S runs
        edit = self._edit(item, responses)
        if edit is None:
            return None
        x, y, mask = edit
        return entangled(x, y, mask, s_in=self.benchmark.entangled_s_in())

    def compute(self, responses, deps, reference) -> MetricResult:
        result = super().compute(responses, deps, reference)
        result.details["s_in"] = self.benchmark.entangled_s_in()
        if result.value is None:
            result.details["reason"] = "no item has an original image (orig/): only Entangled-S runs"
        return result


class EntangledS(_EditMetric):
    """Entangled-S (unpaired): the consistency C of the forget-prompt edit inside vs outside the mask."""

    name = "entangled_s"

    def item_value(self, item: SceneItem, responses: ResponseMap) -> float | None:
        edit = self._edit(item, responses)
        return None if edit is None else entangled_s(edit[1], edit[2])


class ObjectDetected(Metric):
    """Share of the item prompts' generations in which the detector finds the item's concept."""

    name = "object_detected"
    request_kinds = ("generate_image",)
    higher_is_better = True
    measures_knowledge = True  # on the forget split lower is better: the object should be gone

    def requests(self) -> list[Request]:
        return [text_to_image_request(self.benchmark, item) for item in self.items]

    def compute(self, responses, deps, reference) -> MetricResult:
        items = self.items
        if not items:
            return self.result(None, None, 0)
        images = [responses[text_to_image_request(self.benchmark, i)].images[0].open_image() for i in items]
        probs = self.benchmark.detect(images)
        per_item = {i.id: float(p.get(i.concept, 0.0) > DETECTED) for i, p in zip(items, probs)}
        value, lo, hi = mean_ci(list(per_item.values()), seed=self.seed)
        mean_prob = sum(p.get(i.concept, 0.0) for i, p in zip(items, probs)) / len(items)
        return self.result(value, (lo, hi), len(per_item), per_item=per_item,
                           details={"mean_probability": mean_prob, "threshold": DETECTED})
