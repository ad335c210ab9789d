"""The canonical U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), trained from scratch.

Written here because smp's ``Unet`` always has a classification-backbone encoder; this is the
paper's symmetric one: double 3x3 convolutions, 2x2 max pooling, 2x2 up-convolutions that halve
the channels, concatenated skips and a 1x1 output convolution. Two departures keep the output
at the input size and training stable: padded convolutions (the paper's are unpadded, shrinking
the map) and batch norm after each convolution.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models.base import (
    ConvBlock,
    DepthModel,
    crop_to,
    depth_head,
    pad_to_multiple,
    variant,
)
from trainables.models.registry import PretrainedWeightsError, register_model


class UNet(DepthModel):
    """U-Net with ``len(channels) - 1`` poolings.

    Args:
        channels: width of each level, shallowest first; the paper's is (64, 128, 256, 512, 1024).
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        channels = tuple(channels)
        self.multiple = 2 ** (len(channels) - 1)
        self.down = nn.ModuleList([ConvBlock(3, channels[0])]
                                  + [ConvBlock(a, b) for a, b in pairwise(channels)])
        deep_first = list(pairwise(channels))[::-1]  # [(512, 1024), (256, 512), ...]
        self.up = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in deep_first])
        self.dec = nn.ModuleList([ConvBlock(2 * a, a) for a, _ in deep_first])
        self.head = depth_head(channels[0])

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.multiple)
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)  # level i: (B, channels[i], H/2^i, W/2^i)
            skips.append(x)
        for up, block, skip in zip(self.up, self.dec, skips[-2::-1], strict=True):
            x = block(torch.cat([skip, up(x)], dim=1))
        return crop_to(self.head(x), size)  # (B, 1, H, W)


# "small": a quarter of the width, for CPU runs (search_spaces/cpu_transfer.py).
_UNET = {"base": dict(channels=(64, 128, 256, 512, 1024)), "small": dict(channels=(16, 32, 64, 128, 256)),
         "tiny": dict(channels=(8, 16, 32))}


def _create_unet(*, pretrained: bool | str | Path, channels: tuple[int, ...]) -> UNet:
    if pretrained:
        where = "" if pretrained is True else f"{pretrained}: not a depth-grid save (config.json + model.pt). "
        raise PretrainedWeightsError(
            f"{where}unet is trained from scratch: no released weights exist. Load your own with "
            "pretrained=DIR (written by model.save_pretrained) or pretrained=FILE (a trial checkpoint.pt)")
    return UNet(channels)


@register_model("unet")
def unet(*, pretrained: bool | str | Path = False, size: str = "base", **kw) -> DepthModel:
    return _create_unet(pretrained=pretrained, **{**variant(_UNET, size), **kw})
