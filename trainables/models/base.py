"""The contract every depth model keeps, and helpers the architectures share."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.pt"
LOG_DEPTH_INIT = math.log(3.0)  # heads start near 3 m, the middle of indoor depth ranges


class DepthModel(nn.Module):
    """Normalised RGB (B, 3, H, W) -> positive depth in metres (B, 1, H, W), any H and W.

    Subclasses implement ``forward_log``; the loss uses it directly so training never takes
    the log of a prediction. ``arch_config`` ({"name", "kwargs"}) is set by ``build_model``
    and is enough to rebuild the architecture.
    """

    arch_config: dict

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, H, W)
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.forward_log(x))

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.pt``; ``build_model(name, pretrained=directory)`` reads it."""
        from trainables.io import atomic_write, write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_write(directory / WEIGHTS_NAME, "wb") as fh:
            torch.save(self.state_dict(), fh)
        write_json(directory / CONFIG_NAME, {"format": "depth-grid", **self.arch_config})
        return directory


def read_saved_config(directory: Path) -> dict | None:
    """The depth-grid config in ``directory``, or None when it holds something else."""
    path = directory / CONFIG_NAME
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    return cfg if cfg.get("format") == "depth-grid" else None


def pad_to_multiple(x: torch.Tensor, multiple: int = 32) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B, C, H, W) on the bottom/right to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo ``pad_to_multiple``."""
    return x[..., : size[0], : size[1]]


def upsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (B, C, h, w) -> (B, C, *size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBlock(nn.Sequential):
    """(Conv3x3-BN-ReLU) x 2, the U-Net double convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        )


def init_log_depth(conv: nn.Conv2d) -> nn.Conv2d:
    """Make ``conv`` a log-depth output layer that starts near 3 m.

    The weights are small, not zero: a zero last layer passes exactly zero gradient to every
    layer before it on the first step (and hides dead branches from the gradient test).
    """
    nn.init.normal_(conv.weight, std=1e-3)
    nn.init.constant_(conv.bias, LOG_DEPTH_INIT)
    return conv


def depth_head(c_in: int) -> nn.Conv2d:
    """1x1 conv to one log-depth channel, biased to start near 3 m."""
    return init_log_depth(nn.Conv2d(c_in, 1, 1))


def variant(table: dict[str, dict], size: str) -> dict:
    """The kwargs of one size of an architecture (``table`` maps size name -> kwargs)."""
    if size not in table:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(table)}")
    return dict(table[size])
