"""Evaluation protocols: which ground-truth pixels count and how predictions are adjusted
before the metrics of ``trainables.metrics``, as depth papers score NYU and KITTI.

A protocol is a named preset (``PROTOCOLS``): a crop of the frame and a depth cap. Ground truth
counts only where ``min_depth < t < max_depth`` inside the crop; predictions are clipped to
``[min_depth, max_depth]``, as BTS's ``utils/eval_with_pngs.py`` does; the
Monocular-Depth-Estimation-Toolbox (``depth/datasets/{nyu,kitti}.py``) masks the ground truth the
same way and leaves predictions unclipped (sources and definitions in docs/metrics.md). ``none`` is depth-grid's own rule: every ``t > 1e-6`` counts,
predictions are only clamped to ``>= 1e-6``.

Alignment (``ALIGNMENTS``) is for models whose output is right only up to a scale (``median``,
as Monodepth2's evaluation does) or a scale and shift
(``lstsq``, as MiDaS and Depth Anything's relative evaluation do). It is fitted per image on
the pixels that count, before the cap clips the prediction. ``lstsq`` is fitted in a space
(``ALIGN_SPACES``): ``depth`` (metres), ``inverse`` (disparity, MiDaS's space) or ``log``.
Everything here is numpy on one image's (H, W) maps; nothing imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VALID_MIN = 1e-6  # trainables.metrics.VALID_MIN: ground truth <= this is "no ground truth"
PRED_MIN = 1e-6  # trainables.metrics.PRED_MIN
NYU_FRAME = (480, 640)
EIGEN_CROP = (45, 471, 41, 601)  # trainables.data.EIGEN_CROP, on a 480x640 frame
ALIGNMENTS = ("none", "median", "lstsq")
ALIGN_SPACES = ("depth", "inverse", "log")
MEANS = ("image", "pooled")


class ProtocolError(ValueError):
    """An unknown protocol or alignment, or a protocol that cannot apply to the data as read
    (``depth-grid`` reports it as bad input, exit 2: the error map's ``ValueError``)."""


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Args:
        name: the preset's name.
        min_depth, max_depth: ground truth counts where ``min_depth < t < max_depth``; predictions
            are clipped to ``[min_depth, max_depth]``. ``None``: no cap (depth-grid's ``t > 1e-6``).
        crop_box: a fixed ``(top, bottom, left, right)`` on frames of exactly ``frame`` size.
        crop_fractions: ``(top, bottom, left, right)`` as fractions of the frame's height and
            width, truncated to pixels as BTS does (``int(0.40810811 * h)``).
        frame: the frame size ``crop_box`` is defined on.
        source: where the definition comes from.
    """

    name: str
    min_depth: float | None = None
    max_depth: float | None = None
    crop_box: tuple[int, int, int, int] | None = None
    crop_fractions: tuple[float, float, float, float] | None = None
    frame: tuple[int, int] | None = None
    source: str = ""

    @property
    def capped(self) -> bool:
        return self.max_depth is not None

    @property
    def crops(self) -> bool:
        return self.crop_box is not None or self.crop_fractions is not None

    def region(self, shape: tuple[int, int], data_crop: tuple[int, int, int, int] | None = None
               ) -> tuple[slice, slice] | None:
        """The rows and columns scored in a ground-truth map of ``shape``, read with the dataset
        crop ``data_crop`` (``None``: the whole map).

        The protocol's crop is defined on the full frame. Data already cropped to exactly that
        box (``--crop eigen`` with ``nyu``) is scored whole; any other crop before a cropping
        protocol would move the box, so it is refused.
        """
        if not self.crops or self.cropped_already(data_crop):
            return None
        h, w = shape
        if self.crop_box is not None:
            if self.frame is not None and tuple(shape) != self.frame:
                raise ProtocolError(f"protocol {self.name!r}: its crop {self.crop_box} is defined on "
                                    f"{self.frame[0]}x{self.frame[1]} frames, got a {h}x{w} ground truth")
            top, bottom, left, right = self.crop_box
        else:
            ft, fb, fl, fr = self.crop_fractions  # type: ignore[misc]
            top, bottom, left, right = int(ft * h), int(fb * h), int(fl * w), int(fr * w)
        return slice(top, bottom), slice(left, right)

    def cropped_already(self, data_crop: tuple[int, int, int, int] | None) -> bool:
        """Whether data read with ``data_crop`` is already this protocol's crop; raises when it is
        another crop and this protocol crops (its box would land elsewhere in the frame)."""
        if data_crop is None or not self.crops:
            return False
        if tuple(data_crop) == self.crop_box:
            return True
        raise ProtocolError(f"protocol {self.name!r} crops the full frame itself, but the data is read with crop "
                            f"{tuple(data_crop)}: read it without a crop (--crop none)")

    def mask(self, target: np.ndarray, data_crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Boolean (H, W): the pixels that count (finite, above 1e-6, inside the cap and the crop)."""
        with np.errstate(invalid="ignore"):  # NaN compares False: not valid
            valid = np.isfinite(target) & (target > VALID_MIN)
            if self.min_depth is not None:
                valid &= target > self.min_depth
            if self.max_depth is not None:
                valid &= target < self.max_depth
        region = self.region(target.shape, data_crop)
        if region is not None:
            inside = np.zeros_like(valid)
            inside[region] = True
            valid &= inside
        return valid

    def clip(self, pred: np.ndarray) -> np.ndarray:
        """Predictions clipped to the cap (always at least ``PRED_MIN``, the competition's rule)."""
        low = max(self.min_depth or 0.0, PRED_MIN)
        return np.clip(pred, low, self.max_depth if self.max_depth is not None else np.inf)


_BTS = "BTS utils/eval_with_pngs.py (cleinc/bts)"
_TOOLBOX = "Monocular-Depth-Estimation-Toolbox depth/core/evaluation/metrics.py + depth/datasets/{nyu,kitti}.py"
PROTOCOLS: dict[str, Protocol] = {
    "none": Protocol("none", source="depth-grid: every t > 1e-6, no crop, no cap"),
    "nyu": Protocol("nyu", 1e-3, 10.0, crop_box=EIGEN_CROP, frame=NYU_FRAME,
                    source=f"{_BTS} --eigen_crop (eval_mask[45:471, 41:601]); {_TOOLBOX}"),
    "kitti_eigen": Protocol("kitti_eigen", 1e-3, 80.0, crop_fractions=(0.3324324, 0.91351351, 0.0359477, 0.96405229),
                            source=f"{_BTS} --dataset kitti --eigen_crop; {_TOOLBOX}"),
    "kitti_garg": Protocol("kitti_garg", 1e-3, 80.0,
                           crop_fractions=(0.40810811, 0.99189189, 0.03594771, 0.96405229),
                           source=f"{_BTS} --garg_crop; {_TOOLBOX}"),
}


def get_protocol(name: str | Protocol | None) -> Protocol:
    """A preset by name (``None``: ``none``); an unknown name raises, listing the valid ones."""
    if isinstance(name, Protocol):
        return name
    if name is None:
        return PROTOCOLS["none"]
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def check_choice(option: str, value: str, valid: tuple[str, ...]) -> str:
    """``value`` if it is one of ``valid``, else a ``ProtocolError`` naming ``option``."""
    if value not in valid:
        raise ProtocolError(f"{option}: unknown value {value!r}; valid: {', '.join(valid)}")
    return value


# ---- alignment: one image's valid pixels, p (clamped prediction) and t, both 1-D and > 0 -------
def align_median(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``p * median(t) / median(p)`` (a scale; the same in every space up to the median's
    definition, so it is always taken on depth)."""
    return p * (np.median(t) / np.median(p))


def _lstsq(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Scale and shift ``(s, b)`` minimising ``sum((s * x + b - y)^2)``. With one distinct value
    of ``x`` (a constant prediction) the scale is undetermined: ``s = 1``, only the shift is fitted."""
    if np.ptp(x) == 0:
        return 1.0, float(np.mean(y - x))
    a = np.stack([x, np.ones_like(x)], axis=1)
    (s, b), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(s), float(b)


def align_lstsq(p: np.ndarray, t: np.ndarray, space: str = "depth", max_depth: float | None = None) -> np.ndarray:
    """Least-squares scale and shift of ``p`` onto ``t`` in ``space``, returned as depth.

    ``depth``: ``s * p + b`` against ``t`` (may go below 0: the clamp or the cap then applies).
    ``inverse``: ``s / p + b`` against ``1 / t``, as MiDaS aligns disparity; the aligned
    disparity is kept at least ``1 / max_depth`` (``1e-6`` without a cap) before inverting.
    ``log``: ``s * log p + b`` against ``log t``, i.e. ``exp(b) * p ** s``.
    """
    if space == "depth":
        s, b = _lstsq(p, t)
        return s * p + b
    if space == "inverse":
        s, b = _lstsq(1.0 / p, 1.0 / t)
        floor = 1.0 / max_depth if max_depth else PRED_MIN
        return 1.0 / np.maximum(s / p + b, floor)
    if space == "log":
        s, b = _lstsq(np.log(p), np.log(t))
        return np.exp(s * np.log(p) + b)
    raise ProtocolError(f"unknown alignment space {space!r}; valid: {', '.join(ALIGN_SPACES)}")


@dataclass(frozen=True)
class Scoring:
    """How one image's pixels are chosen and its prediction adjusted before the metrics.

    Args:
        protocol: a ``Protocol`` or a preset's name.
        align: ``none``, ``median`` or ``lstsq`` (fitted per image on the pixels that count).
        align_space: ``lstsq``'s space: ``depth``, ``inverse`` or ``log``.
        data_crop: the crop the data reader already applied (``DatasetSpec.crop``).
    """

    protocol: Protocol | str | None = None
    align: str = "none"
    align_space: str = "depth"
    data_crop: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", get_protocol(self.protocol))
        check_choice("align", self.align, ALIGNMENTS)
        check_choice("align_space", self.align_space, ALIGN_SPACES)
        if self.data_crop is not None:
            object.__setattr__(self, "data_crop", tuple(int(v) for v in self.data_crop))

    @property
    def plain(self) -> bool:
        """depth-grid's own rule: no crop, no cap, no alignment (``metrics.valid_pixels``)."""
        return self.protocol.name == "none" and self.align == "none"  # type: ignore[union-attr]

    def pixels(self, pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pixels that count as 1-D (adjusted prediction, target), in this order: mask (crop,
        cap, valid), clamp to ``>= 1e-6``, align, clip to the cap."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
        protocol: Protocol = self.protocol  # type: ignore[assignment]
        valid = protocol.mask(target, self.data_crop)
        p, t = np.maximum(pred[valid], PRED_MIN), target[valid]
        if t.size and self.align == "median":
            p = align_median(p, t)
        elif t.size and self.align == "lstsq":
            p = align_lstsq(p, t, self.align_space, protocol.max_depth)
        return protocol.clip(p), t

    def record(self) -> dict[str, str]:
        """What a result records of how it was scored."""
        return {"protocol": self.protocol.name, "align": self.align,  # type: ignore[union-attr]
                **({"align_space": self.align_space} if self.align == "lstsq" else {})}
