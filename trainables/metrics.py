"""Depth metrics, exactly as documented in docs/metrics.md.

Every metric is computed on the *valid pixels* of one image: the target is finite and
``> 1e-6`` (metres); the prediction is clamped to ``>= 1e-6`` first (the competition's rule, so
log-based metrics never see 0). By default a metric is computed per image and then averaged
over the images (images without a valid pixel are skipped); ``pooled=True`` instead pools the
valid pixels of all images and computes each metric once. Natural log unless named ``log10``.

Inputs may be numpy arrays or torch tensors of shape (H, W), (B, H, W) or (B, 1, H, W), or a
list of (H, W) / (1, H, W) maps of different sizes. Computation is in float64 numpy on the CPU
(tensors are copied there; numpy's masked indexing and logs are several times faster than
torch's on CPU). Non-finite predictions are not masked: they make the affected metrics NaN.

A ``scoring`` (``trainables.protocols.Scoring``: a protocol's crop and depth cap, an alignment of
relative depth) replaces the valid-pixel rule above where given; without one, or with protocol
``none`` and no alignment, the rule above applies unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from trainables.protocols import Scoring

VALID_MIN = 1e-6  # target <= this is "no ground truth" (trainables.data.VALID_MIN)
PRED_MIN = 1e-6  # predictions are clamped to at least this (competition rule)

MetricFn = Callable[[np.ndarray, np.ndarray], float]


# Each function takes the 1-D float64 valid pixels of one image (or of a pooled set):
# p = clamped prediction, t = target, both > 0.
def _si_rmse(p: np.ndarray, t: np.ndarray) -> float:
    """sqrt(mean((d - mean d)^2)), d = log p - log t: the competition's scale-invariant RMSE."""
    d = np.log(p) - np.log(t)
    return np.sqrt(np.mean((d - d.mean()) ** 2))


def _abs_rel(p: np.ndarray, t: np.ndarray) -> float:
    """mean(|p - t| / t)."""
    return np.mean(np.abs(p - t) / t)


def _sq_rel(p: np.ndarray, t: np.ndarray) -> float:
    """mean((p - t)^2 / t) (Eigen et al.; metres, not unitless)."""
    return np.mean((p - t) ** 2 / t)


def _rmse(p: np.ndarray, t: np.ndarray) -> float:
    """sqrt(mean((p - t)^2)), metres."""
    return np.sqrt(np.mean((p - t) ** 2))


def _rmse_log(p: np.ndarray, t: np.ndarray) -> float:
    """sqrt(mean((log p - log t)^2)) (not scale invariant)."""
    return np.sqrt(np.mean((np.log(p) - np.log(t)) ** 2))


def _log10(p: np.ndarray, t: np.ndarray) -> float:
    """mean(|log10 p - log10 t|)."""
    return np.mean(np.abs(np.log10(p) - np.log10(t)))


def _delta(k: int) -> MetricFn:
    def delta(p: np.ndarray, t: np.ndarray) -> float:
        return (np.maximum(p / t, t / p) < 1.25**k).mean()

    delta.__doc__ = f"share of pixels with max(p/t, t/p) < 1.25^{k} (higher is better)."
    return delta


def _silog(p: np.ndarray, t: np.ndarray) -> float:
    """BTS convention: 100 * sqrt(mean(d^2) - mean(d)^2), d = log p - log t.

    Used by BTS, AdaBins, ZoeDepth and NeWCRFs for the KITTI-style "SILog". It equals
    ``100 * si_rmse`` up to rounding (the variance written as E[d^2] - E[d]^2). Others differ:
    Depth Anything's ``eval_depth`` reports ``sqrt(mean(d^2) - 0.5 * mean(d)^2)`` without the
    factor 100, and papers that train with SILog sometimes report the loss value (``lam = 0.85``,
    factor 10). Compare SILog numbers across papers only after checking which one is meant.
    """
    d = np.log(p) - np.log(t)
    # Rounding can make the difference slightly negative when d is (nearly) constant.
    return 100.0 * np.sqrt(np.maximum(np.mean(d**2) - np.mean(d) ** 2, 0.0))


# name -> function of the valid pixels; the order is the order of every table and dict.
METRICS: dict[str, MetricFn] = {
    "si_rmse": _si_rmse,
    "abs_rel": _abs_rel,
    "sq_rel": _sq_rel,
    "rmse": _rmse,
    "rmse_log": _rmse_log,
    "log10": _log10,
    "delta1": _delta(1),
    "delta2": _delta(2),
    "delta3": _delta(3),
    "silog": _silog,
}
HIGHER_IS_BETTER = frozenset({"delta1", "delta2", "delta3"})


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def as_maps(x: Any) -> list[np.ndarray]:
    """Split an input into a list of float64 (H, W) maps, one per image."""
    if isinstance(x, (list, tuple)):
        return [m for item in x for m in as_maps(item)]
    return split_batch(_to_numpy(x))


def split_batch(a: Any) -> list:
    """One array (NumPy or torch) of depth maps as a list of (H, W) maps, one per image."""
    if a.ndim == 2:
        return [a]
    if a.ndim == 3:
        return list(a)
    if a.ndim == 4 and a.shape[1] == 1:
        return list(a[:, 0])
    raise ValueError(f"expected a depth map (H, W), (B, H, W) or (B, 1, H, W), got shape {tuple(a.shape)}")


def valid_pixels(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The valid pixels of one image as 1-D (clamped prediction, target)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    with np.errstate(invalid="ignore"):  # NaN > 1e-6 is False, which is what we want
        valid = np.isfinite(target) & (target > VALID_MIN)
    return np.maximum(pred[valid], PRED_MIN), target[valid]


def _pairs(pred: Any, target: Any, scoring: Scoring | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    preds, targets = as_maps(pred), as_maps(target)
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
    pick = valid_pixels if scoring is None or scoring.plain else scoring.pixels
    pairs = [pick(p, t) for p, t in zip(preds, targets, strict=True)]
    return [(p, t) for p, t in pairs if t.size > 0]


def image_metrics(pred: Any, target: Any, scoring: Scoring | None = None) -> list[dict[str, float]]:
    """All metrics of each image that has a valid pixel (one dict per such image); ``scoring``:
    a protocol and alignment (``trainables.protocols.Scoring``; default depth-grid's rule)."""
    return [{name: float(fn(p, t)) for name, fn in METRICS.items()} for p, t in _pairs(pred, target, scoring)]


def _mean(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {name: sum(r[name] for r in rows) / len(rows) for name in METRICS}


def compute_metrics(pred: Any, target: Any, *, pooled: bool = False,
                    scoring: Scoring | None = None) -> dict[str, float]:
    """All metrics (``METRICS`` order), averaged per image, or over pooled pixels if ``pooled``;
    ``scoring``: a protocol and alignment (``trainables.protocols.Scoring``).

    Raises ``ValueError`` when no image has a valid target pixel.
    """
    pairs = _pairs(pred, target, scoring)
    if not pairs:
        raise ValueError("no valid target pixel (finite and > 1e-6) in any image: nothing to score")
    if pooled:
        p = np.concatenate([p for p, _ in pairs])
        t = np.concatenate([t for _, t in pairs])
        return {name: float(fn(p, t)) for name, fn in METRICS.items()}
    return _mean([{name: float(fn(p, t)) for name, fn in METRICS.items()} for p, t in pairs])


def si_rmse(pred: Any, target: Any) -> float:
    """The competition score: per image, targets ``<= 1e-6`` masked, predictions clamped to
    ``>= 1e-6``, ``d = log(pred) - log(target)``, ``sqrt(mean((d - mean d)^2))``; averaged
    over the images. Lower is better; multiplying a prediction by a constant does not change it.
    """
    pairs = _pairs(pred, target)
    if not pairs:
        raise ValueError("no valid target pixel (finite and > 1e-6) in any image: nothing to score")
    return sum(float(_si_rmse(p, t)) for p, t in pairs) / len(pairs)


# Pooled means without keeping the pixels (NYU's 654 test images hold 156M of them): each
# metric is a function of per-pixel sums. Order: n, d, d^2, |p-t|/t, (p-t)^2/t, (p-t)^2,
# |log10 p - log10 t|, then the three delta counts.
def _pixel_sums(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    d = np.log(p) - np.log(t)
    ratio = np.maximum(p / t, t / p)
    return np.array([d.size, d.sum(), (d**2).sum(), (np.abs(p - t) / t).sum(), ((p - t) ** 2 / t).sum(),
                     ((p - t) ** 2).sum(), np.abs(np.log10(p) - np.log10(t)).sum(),
                     *((ratio < 1.25**k).sum() for k in (1, 2, 3))], dtype=np.float64)


def _from_sums(s: np.ndarray) -> dict[str, float]:
    n = s[0]
    var = max(s[2] / n - (s[1] / n) ** 2, 0.0)  # E[d^2] - E[d]^2, as BTS writes SILog
    values = {"si_rmse": np.sqrt(var), "abs_rel": s[3] / n, "sq_rel": s[4] / n, "rmse": np.sqrt(s[5] / n),
              "rmse_log": np.sqrt(s[2] / n), "log10": s[6] / n, "delta1": s[7] / n, "delta2": s[8] / n,
              "delta3": s[9] / n, "silog": 100.0 * np.sqrt(var)}
    return {name: float(values[name]) for name in METRICS}


class MetricAccumulator:
    """Collects per-image metrics over batches; ``result()`` is their mean over images, or with
    ``pooled=True`` each metric over all scored pixels at once (from running sums).

    ``update`` takes a batch or a list of differently sized maps. Images without a valid pixel
    are skipped (``count`` says how many were scored). ``rows`` keeps one dict per image.
    ``scoring`` (``trainables.protocols.Scoring``) picks the pixels and aligns the predictions
    (default: depth-grid's rule, no protocol).
    """

    def __init__(self, scoring: Scoring | None = None, *, pooled: bool = False) -> None:
        self.rows: list[dict[str, float]] = []
        self.scoring = scoring
        self.pooled = pooled
        self.sums = np.zeros(10)

    @property
    def count(self) -> int:
        return len(self.rows)

    def update(self, pred: Any, target: Any) -> None:
        for p, t in _pairs(pred, target, self.scoring):
            self.rows.append({name: float(fn(p, t)) for name, fn in METRICS.items()})
            if self.pooled:
                self.sums += _pixel_sums(p, t)

    def result(self) -> dict[str, float]:
        if not self.rows:
            raise ValueError("MetricAccumulator has no scored image (no valid target pixel seen)")
        return _from_sums(self.sums) if self.pooled else _mean(self.rows)
