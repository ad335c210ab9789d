"""The metrics of ``trainables.metrics`` in torch, on the device the prediction is on.

``trainables.metrics`` stays the reference: float64 numpy on the CPU, each image's valid pixels
picked out by indexing. Here the same numbers come from float64 tensors on the prediction's
device, so a GPU trial's validation copies no depth map to the host, and with no host sync per
image: the pixels that count are a mask and every mean a masked sum over the whole map (boolean
indexing would read the mask's count back), the median is a sort with the masked pixels last,
the least-squares fit is closed form. Each image's row stays on the device until ``result()``
reads all of them back in one copy. Equal to the reference to 1e-6 (tests/test_metrics_torch.py,
on real NYU frames, under every protocol and alignment).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from trainables.metrics import METRICS, PRED_MIN, VALID_MIN, _from_sums, _mean, split_batch
from trainables.protocols import Protocol, Scoring

Tensor = torch.Tensor


def tensor_maps(x: Any, device: torch.device | None = None) -> list[Tensor]:
    """Split an input (as ``metrics.as_maps`` takes it) into float64 (H, W) tensors on ``device``
    (default: where each one already is)."""
    if isinstance(x, (list, tuple)):
        return [m for item in x for m in tensor_maps(item, device)]
    return split_batch(torch.as_tensor(x).detach().to(device=device, dtype=torch.float64, non_blocking=True))


def _masked_sum(x: Tensor, valid: Tensor) -> Tensor:
    return torch.where(valid, x, 0.0).sum()


def _median(x: Tensor, valid: Tensor, n: Tensor) -> Tensor:
    """``np.median(x[valid])``: the mean of the two middle values (one when ``n`` is odd)."""
    # On the CPU there is no queue to stall: select as numpy does (a full sort is ~10x slower).
    return median_selected(x, valid) if x.device.type == "cpu" else median_sorted(x, valid, n)


def median_selected(x: Tensor, valid: Tensor) -> Tensor:
    """``_median`` by picking the valid pixels out (reads their count back: a sync on a GPU)."""
    picked = x[valid]
    m = picked.numel()
    if m == 0:
        return x.new_tensor(torch.nan)
    middle = (picked.kthvalue((m - 1) // 2 + 1).values + picked.kthvalue(m // 2 + 1).values) / 2
    return torch.where(torch.isnan(picked).any(), torch.nan, middle)


def median_sorted(x: Tensor, valid: Tensor, n: Tensor) -> Tensor:
    """``_median`` without a sync: sort with the masked pixels last (+inf), gather the middle."""
    ordered = torch.where(valid, x, torch.inf).flatten().sort().values
    last = ordered.numel() - 1
    lo = ((n - 1) // 2).clamp(0, last).view(1)
    hi = (n // 2).clamp(0, last).view(1)
    middle = (ordered.index_select(0, lo) + ordered.index_select(0, hi))[0] / 2
    undefined = torch.isnan(x).logical_and(valid).any() | (n == 0)  # numpy: NaN in, NaN out
    return torch.where(undefined, torch.nan, middle)


def _fit(x: Tensor, y: Tensor, valid: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
    """``protocols._lstsq`` on the valid pixels: scale and shift of ``x`` onto ``y``; a constant
    ``x`` gets scale 1 and the mean difference as its shift."""
    mx, my = _masked_sum(x, valid) / n, _masked_sum(y, valid) / n
    dx, dy = torch.where(valid, x - mx, 0.0), torch.where(valid, y - my, 0.0)
    spread = torch.where(valid, x, -torch.inf).amax() - torch.where(valid, x, torch.inf).amin()
    flat = spread == 0
    s = torch.where(flat, 1.0, (dx * dy).sum() / (dx * dx).sum())
    return s, my - s * mx


def _align(p: Tensor, t: Tensor, valid: Tensor, n: Tensor, scoring: Scoring, max_depth: float | None) -> Tensor:
    """``Scoring.pixels``' alignment, on the whole map (only the valid pixels are read)."""
    if scoring.align == "median":
        return p * (_median(t, valid, n) / _median(p, valid, n))
    if scoring.align != "lstsq":
        return p
    space = scoring.align_space
    if space == "depth":
        s, b = _fit(p, t, valid, n)
        return s * p + b
    if space == "inverse":
        s, b = _fit(1.0 / p, 1.0 / t, valid, n)
        return 1.0 / torch.clamp(s / p + b, min=1.0 / max_depth if max_depth else PRED_MIN)
    s, b = _fit(torch.log(p), torch.log(t), valid, n)  # "log" (Scoring checked the name)
    return torch.exp(s * torch.log(p) + b)


def scored_maps(pred: Tensor, target: Tensor, scoring: Scoring) -> tuple[Tensor, Tensor, Tensor]:
    """One image as whole (H, W) maps: the adjusted prediction, the target (both 1 where a pixel
    does not count, so that no log sees 0) and the mask of the pixels that count, in
    ``Scoring.pixels``' order: mask (valid, cap, crop), clamp to ``>= 1e-6``, align, clip."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    protocol: Protocol = scoring.protocol  # type: ignore[assignment]  # Scoring resolved the name
    valid = torch.isfinite(target) & (target > VALID_MIN)
    if protocol.min_depth is not None:
        valid &= target > protocol.min_depth
    if protocol.max_depth is not None:
        valid &= target < protocol.max_depth
    region = protocol.region(tuple(target.shape), scoring.data_crop)
    if region is not None:
        inside = torch.zeros_like(valid)
        inside[region] = True
        valid &= inside
    n = valid.sum()
    t = torch.where(valid, target, 1.0)
    p = torch.where(valid, torch.clamp(pred, min=PRED_MIN), 1.0)
    p = _align(p, t, valid, n, scoring, protocol.max_depth)
    p = torch.clamp(p, max(protocol.min_depth or 0.0, PRED_MIN), protocol.max_depth)  # max None: no cap
    return torch.where(valid, p, 1.0), t, valid


def _terms(p: Tensor, t: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """The pixel count, the log error ``d`` and the per-pixel sums of ``metrics._pixel_sums``.

    ``p`` and ``t`` are 1 where a pixel does not count, so every term there is 0 (``d = 0``,
    ``p - t = 0``) and a plain sum is the masked one, except the deltas: ratio 1 counts there,
    once per such pixel, which is subtracted (exact in float64)."""
    n = valid.sum(dtype=torch.float64)
    outside = valid.numel() - n
    d = torch.log(p) - torch.log(t)
    ratio = torch.maximum(p / t, t / p)
    err = p - t
    sums = [n, d.sum(), (d * d).sum(), (torch.abs(err) / t).sum(), (err * err / t).sum(), (err * err).sum(),
            torch.abs(d).sum() / math.log(10.0),  # |log10 p - log10 t|
            *((ratio < 1.25**k).sum(dtype=torch.float64) - outside for k in (1, 2, 3))]
    return n, d, sums


def image_row(p: Tensor, t: Tensor, valid: Tensor) -> Tensor:
    """(11,) float64: the number of pixels that count, then every metric (``METRICS`` order), as
    ``trainables.metrics`` computes them on those pixels (NaN where none counts)."""
    n, d, sums = _terms(p, t, valid)
    mean_d, mean_d2 = sums[1] / n, sums[2] / n
    values = [
        torch.sqrt(_masked_sum((d - mean_d) ** 2, valid) / n),  # si_rmse: centred, as the reference
        sums[3] / n, sums[4] / n, torch.sqrt(sums[5] / n),  # abs_rel, sq_rel, rmse
        torch.sqrt(mean_d2), sums[6] / n,  # rmse_log, log10
        sums[7] / n, sums[8] / n, sums[9] / n,  # delta1..3
        100.0 * torch.sqrt(torch.clamp(mean_d2 - mean_d**2, min=0.0)),  # silog
    ]
    return torch.stack([n, *values])


def pixel_sums(p: Tensor, t: Tensor, valid: Tensor) -> Tensor:
    """(10,) float64: ``metrics._pixel_sums`` of the pixels that count (pooled means)."""
    return torch.stack(_terms(p, t, valid)[2])


class DeviceMetricAccumulator:
    """``metrics.MetricAccumulator`` on the prediction's device: the same ``update``, ``count``,
    ``rows`` and ``result``; the targets follow the prediction to its device. Nothing is read
    back to the host before ``count``, ``rows``, ``image_rows`` or ``result``."""

    def __init__(self, scoring: Scoring | None = None, *, pooled: bool = False) -> None:
        self.scoring = scoring or Scoring()
        self.pooled = pooled
        self._rows: list[Tensor] = []  # one (11,) row per image updated, scored or not
        self._sums: Tensor | None = None
        self._table: np.ndarray | None = None  # the rows read back, until the next update

    def update(self, pred: Any, target: Any) -> None:
        preds = tensor_maps(pred)
        device = preds[0].device if preds else None
        targets = tensor_maps(target, device)
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
        for p, t in zip(preds, targets, strict=True):
            maps = scored_maps(p, t, self.scoring)
            self._rows.append(image_row(*maps))
            if self.pooled:
                sums = pixel_sums(*maps)
                self._sums = sums if self._sums is None else self._sums + sums
        self._table = None

    def _read(self) -> np.ndarray:
        if self._table is None:
            self._table = torch.stack(self._rows).cpu().numpy() if self._rows else np.zeros((0, 11))
        return self._table

    def image_rows(self) -> list[dict[str, float] | None]:
        """One entry per image updated, in order: its metrics, or None (no pixel counted)."""
        return [dict(zip(METRICS, map(float, row[1:]), strict=True)) if row[0] > 0 else None
                for row in self._read()]

    @property
    def rows(self) -> list[dict[str, float]]:
        return [row for row in self.image_rows() if row is not None]

    @property
    def count(self) -> int:
        return int((self._read()[:, 0] > 0).sum())

    def result(self) -> dict[str, float]:
        rows = self.rows
        if not rows:
            raise ValueError("MetricAccumulator has no scored image (no valid target pixel seen)")
        return _from_sums(self._sums.cpu().numpy()) if self.pooled else _mean(rows)  # type: ignore[union-attr]
