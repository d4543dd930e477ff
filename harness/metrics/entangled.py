"""ForgetMe's Entangled-D and Entangled-S (docs/metrics.md §13), pure numpy, and their metrics.

Inputs are RGB arrays in [0, 1] (H, W, 3) and a boolean mask (H, W), True = the region to
forget ("in"); "out" is its complement. X is the original picture, Y the edited one.

  S_in  = 1 - RMSE(X_in, Y_in)            (as the reference code computes it; see below)
  S_out = RMSE(X_out, Y_out)
  S     = 2 S_in (1 - S_out) / (S_in + (1 - S_out) + eps)
  M     = 2 mu_in mu_out / (mu_in^2 + mu_out^2 + eps)          on Y, pooled over pixels and channels
  V     = 2 sigma_in sigma_out / (sigma_in^2 + sigma_out^2 + eps)
  C     = M V
  E     = (alpha + beta) S C / (alpha C + beta S + eps)        Entangled-D: alpha = beta = 0.5
  Entangled-S = C                                               (alpha = 0, beta = 1)

The S_in question (metrics.md §13 caveat). In `YuZhenyuLindy/ForgetMe` (tools/entangled.py,
f585c51) S_in is 1 - RMSE inside the mask, so it rewards an edit that leaves the forgotten
region *unchanged*, which runs against forgetting. We could not read the paper's equation
itself (arXiv 2504.12574; not reachable from here), so the default follows the code, which is
what produced the published numbers (`s_in="code"`), and `s_in="change"` offers the reading a
forgetting metric suggests (S_in = RMSE inside the mask: the region did change). The choice is
recorded in every result's details and in docs/metrics.md.

Note also that with alpha = 0, beta = 1 the formula gives S C / (S + eps), which equals C only
up to eps (and is 0, not C, when S = 0); Entangled-S is defined as C itself, as the reference
code returns it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

EPS = 1e-6
SIn = Literal["code", "change"]


def _region(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return x[mask].reshape(-1)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else 0.0


def consistency(y: np.ndarray, mask: np.ndarray) -> float:
    """C = M V on Y: do the forgotten region and the rest have the same brightness and contrast?"""
    yin, yout = _region(y, mask), _region(y, ~mask)
    mu_in, mu_out = (float(yin.mean()), float(yout.mean())) if yin.size and yout.size else (0.0, 0.0)
    var_in, var_out = (float(yin.var()), float(yout.var())) if yin.size and yout.size else (0.0, 0.0)
    m = 2 * mu_in * mu_out / (mu_in**2 + mu_out**2 + EPS)
    v = 2 * np.sqrt(var_in) * np.sqrt(var_out) / (var_in + var_out + EPS)
    return float(m * v)


def similarity(x: np.ndarray, y: np.ndarray, mask: np.ndarray, s_in: SIn = "code") -> float:
    """S: the harmonic mean of the inside term and (1 - the outside change)."""
    rmse_in = _rmse(_region(x, mask), _region(y, mask))
    sin = 1.0 - rmse_in if s_in == "code" else rmse_in
    sout = _rmse(_region(x, ~mask), _region(y, ~mask))
    return float(2 * sin * (1 - sout) / (sin + (1 - sout) + EPS))


def entangled(x: np.ndarray, y: np.ndarray, mask: np.ndarray, alpha: float = 0.5, beta: float = 0.5,
              s_in: SIn = "code") -> float:
    """Entangled-D of one (original, edited, mask) triple."""
    _check(y, mask, x)
    s, c = similarity(x, y, mask, s_in), consistency(y, mask)
    return float((alpha + beta) * s * c / (alpha * c + beta * s + EPS))


def entangled_s(y: np.ndarray, mask: np.ndarray) -> float:
    """Entangled-S of one (edited, mask) pair: the consistency C."""
    _check(y, mask)
    return consistency(y, mask)


def _check(y: np.ndarray, mask: np.ndarray, x: np.ndarray | None = None) -> None:
    from harness.errors import HarnessError

    if y.ndim != 3 or y.shape[:2] != mask.shape or (x is not None and x.shape != y.shape):
        raise HarnessError(f"Entangled: image {y.shape}, mask {mask.shape}"
                           + (f", original {x.shape}" if x is not None else "") + " do not match")


def image_array(ref: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """A MediaRef's picture as RGB floats in [0, 1] (resized to `size` (W, H) when given)."""
    im = ref.open_image()
    if size is not None and im.size != size:
        from PIL import Image

        im = im.resize(size, Image.BICUBIC)
    return np.asarray(im, dtype=np.float64) / 255.0


def mask_array(ref: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as booleans (grey level >= 0.5 = inside), as the reference code thresholds it."""
    from PIL import Image
    import io

    im = Image.open(io.BytesIO(ref.read_bytes())).convert("L")
    if size is not None and im.size != size:
        im = im.resize(size, Image.NEAREST)
    return np.asarray(im, dtype=np.float64) / 255.0 >= 0.5
