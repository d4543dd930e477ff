"""FID and CLIP distance of a text-to-image model's generations, with weights the user supplies.

Neither ships weights: a faked feature extractor would give numbers that look like FID and
mean nothing. Without the benchmark option naming them, the metric has no value and says why.

  - `fid@<split>`: the Fréchet distance (Heusel et al. 2017) between features of the split's
    prompt generations (the requests `object_detected` makes: the cache answers them once)
    and features of the split's real pictures: the backgrounds on the forget split (what the
    forget prompt should now draw), the originals elsewhere. Features come from a TorchScript
    module (`fid_features_path`) mapping float pictures (N, 3, H, W) in [0, 1] to (N, D).
    FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), covariances with N - 1, as pytorch-fid.
  - `clip_distance@<split>`: 1 - cosine(image embedding, prompt embedding) under a local CLIP
    checkpoint (`clip_model_path`, `CLIPModel` + its processor), mean over generations;
    ForgetMe's table reports it higher-is-better on the forget prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.api.metric import Metric, MetricResult
from harness.api.requests import Request
from harness.errors import ConfigError
from harness.metrics.diffusion import text_to_image_request


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """The Fréchet distance of two Gaussians (pytorch-fid's formula and its singular-covariance offset)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets (rows = samples)."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("FID needs at least two pictures on each side")
    return frechet_distance(a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)), b.mean(0), np.atleast_2d(np.cov(b, rowvar=False)))


def _pixels(images: Sequence[Any]) -> Any:
    import torch

    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def extract_features(path: str, images: Sequence[Any]) -> np.ndarray:
    """Features of `images` under the user's TorchScript extractor at `path`."""
    import torch

    try:
        net = torch.jit.load(str(Path(path).expanduser()), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001 - a wrong file is the user's to fix
        raise ConfigError(f"fid: cannot load the feature extractor {path!r} as TorchScript: {str(e).splitlines()[0][:200]}") from None
    with torch.no_grad():
        out = net(_pixels(images))
    return out.reshape(len(images), -1).double().numpy()


def clip_distances(path: str, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
    """1 - cosine similarity of each picture with its prompt under the local CLIP at `path`."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(str(Path(path).expanduser())).eval()
        processor = CLIPProcessor.from_pretrained(str(Path(path).expanduser()))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"clip_distance: cannot load a CLIP model from {path!r}: {str(e).splitlines()[0][:200]}") from None
    inputs = processor(text=list(prompts), images=list(images), return_tensors="pt", padding=True)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=inputs["pixel_values"])
        txt = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    return [float(1 - c) for c in cos]


class _WeightsMetric(Metric):
    request_kinds = ("generate_image",)
    option: str = ""

    def weights(self) -> str | None:
        return self.benchmark.options.get(self.option)

    def requests(self) -> list[Request]:
        return [text_to_image_request(self.benchmark, i) for i in self.items] if self.weights() else []

    def generations(self, responses) -> list[Any]:
        return [responses[text_to_image_request(self.benchmark, i)].images[0].open_image() for i in self.items]

    def unavailable(self) -> MetricResult:
        return self.result(None, None, 0, details={
            "reason": f"unavailable: no weights; give the benchmark option `{self.option}` (a local path)"})


class FID(_WeightsMetric):
    """Fréchet distance of the split's generations to its real pictures, under user-supplied features."""

    name = "fid"
    higher_is_better = False
    option = "fid_features_path"

    def compute(self, responses, deps, reference) -> MetricResult:
        if not self.weights():
            return self.unavailable()
        forget = self.benchmark.is_forget_split(self.split)
        real = [(i.bg if forget else i.orig) or i.bg for i in self.items]
        real_images = [r.open_image() for r in real if r is not None]
        gen = self.generations(responses)
        size = gen[0].size
        real_images = [im if im.size == size else im.resize(size) for im in real_images]
        value = fid_from_features(extract_features(self.weights(), gen), extract_features(self.weights(), real_images))
        return self.result(value, None, len(gen), details={"real": "bg" if forget else "orig", "n_real": len(real_images)})


class CLIPDistance(_WeightsMetric):
    """1 - CLIP cosine similarity of each generation with its prompt, mean over the split."""

    name = "clip_distance"
    higher_is_better = True
    option = "clip_model_path"

    def compute(self, responses, deps, reference) -> MetricResult:
        from harness.stats import mean_ci

        if not self.weights():
            return self.unavailable()
        values = clip_distances(self.weights(), self.generations(responses), [self.benchmark.prompt(i) for i in self.items])
        per_item = {i.id: v for i, v in zip(self.items, values)}
        value, lo, hi = mean_ci(values, seed=self.seed)
        return self.result(value, (lo, hi), len(values), per_item=per_item)
