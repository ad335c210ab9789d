"""Samples for training and evaluation: ImageNet normalisation, resizing, the torch Dataset."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trainables import augment as augmentation
from trainables.config import AUGMENTS
from trainables.data import (
    DEFAULT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetSpec,
    Item,
    load_pair,
    load_rgb,
)

_SCALE = np.array([1 / (255 * s) for s in IMAGENET_STD], np.float32)[:, None, None]
_OFFSET = np.array([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)], np.float32)[:, None, None]


def normalize(rgb: np.ndarray, *, flip: bool = False) -> torch.Tensor:
    """uint8 (H, W, 3) -> ImageNet-normalised float32 (3, H, W); ``flip`` mirrors it left-right.

    ``(x / 255 - mean) / std`` as one multiply and one add on planes, the mirroring done by
    writing the multiply's output backwards: no temporary buffers, whose page faults cost more
    than the arithmetic. Keeps the reader within ~10% of bare decoding (benchmarks/bench_data.py).
    """
    src = rgb.transpose(2, 0, 1)
    if src.strides[-1] < 0:  # an already mirrored view (load_pair(flip=True)): read it forwards
        src, flip = src[:, :, ::-1], not flip
    if flip and not src.flags.c_contiguous and src.flags.writeable:
        # a copy is due anyway (a crop): torch makes it mirrored at the cost of a plain copy
        src, flip = torch.from_numpy(src).flip(-1).numpy(), False
    src = np.ascontiguousarray(src)  # no copy for the readers' planar decodes
    out = np.empty(src.shape, np.float32)
    np.multiply(src, _SCALE, out=out[:, :, ::-1] if flip else out)
    out += _OFFSET
    return torch.from_numpy(out)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize`` for (3, H, W) or (B, 3, H, W); values in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of a (C, H, W) image tensor."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def resize_depth(d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of a (1, H, W) depth map, so invalid pixels never blend into valid ones.

    ``nearest-exact`` samples each output pixel at its centre, the grid ``resize_image``'s
    bilinear uses (``align_corners=False``); plain ``nearest`` floors the scaled index and
    shifts the target by up to half an output pixel against the image.
    """
    if tuple(d.shape[-2:]) == tuple(size):
        return d
    return F.interpolate(d[None], size=size, mode="nearest-exact")[0]


class DepthDataset(torch.utils.data.Dataset):
    """Samples ``{"image", "depth", "name", "index"}`` for training or evaluation.

    Args:
        items: from ``index_dataset``.
        spec: how to read them.
        size: model input size (H, W); ``None`` keeps the native size.
        train: resize the target to ``size`` too and augment image and target together;
            otherwise the target stays at native resolution (evaluation).
        with_depth: ``False`` for test lists without ground truth (no ``"depth"`` key).
        augment: with ``train``: ``flip`` (a paired random horizontal flip), ``standard`` (flip,
            then ``trainables.augment.standard``) or ``none``.
    """

    def __init__(
        self,
        items: list[Item],
        spec: DatasetSpec,
        size: tuple[int, int] | None = DEFAULT_SIZE,
        train: bool = False,
        with_depth: bool = True,
        augment: str = "flip",
    ) -> None:
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        self.items, self.spec, self.size = list(items), spec, size
        self.train, self.with_depth, self.augment = train, with_depth, augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        # torch's RNG: seeded per loader worker
        flip = self.train and self.augment != "none" and bool(torch.rand(()) < 0.5)
        if self.with_depth:
            rgb, depth_np = load_pair(item, self.spec, flip=flip)  # both mirrored, or neither
        else:
            rgb, depth_np = load_rgb(item, self.spec)[:, :: -1 if flip else 1], None
        image = normalize(rgb)  # (3, H, W)
        if self.size is not None:
            image = resize_image(image, self.size)
        sample = {"image": image, "name": item.name, "index": index}
        if depth_np is not None:
            depth = torch.from_numpy(depth_np)[None]  # (1, H, W)
            if self.train and self.size is not None:
                depth = resize_depth(depth, self.size)
            if self.train and self.augment == "standard":
                sample["image"], depth = augmentation.standard(image, depth)
            sample["depth"] = depth
        return sample


def collate(batch: list[dict]) -> dict:
    """Stack images; stack depths when they share a size, else keep them as a list."""
    out: dict = {
        "image": torch.stack([b["image"] for b in batch]),
        "name": [b["name"] for b in batch],
        "index": torch.tensor([b["index"] for b in batch]),
    }
    if "depth" in batch[0]:
        depths = [b["depth"] for b in batch]
        same = all(d.shape == depths[0].shape for d in depths)
        out["depth"] = torch.stack(depths) if same else depths
    return out
