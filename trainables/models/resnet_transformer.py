"""ResNet50 encoder, transformer encoder layers over the bottleneck feature map, U-Net decoder.

The encoder and decoder are smp's ``Unet`` (the same ImageNet ResNet50 weights as
``resnet_unet``); the transformer sees the (H/32 * W/32) bottleneck positions as tokens, so
global context reaches every position before the decoder upsamples.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from timm.layers import build_sincos2d_pos_embed
from torch import nn

from trainables.models.base import DepthModel, variant
from trainables.models.registry import register_model
from trainables.models.smp_models import create_smp_model


class BottleneckTransformer(nn.Module):
    """Pre-norm transformer encoder layers on a feature map, added back as a residual.

    Positions get a fixed 2-D sine-cosine encoding computed for the map's own (h, w), so any
    input size works (a learned table would fix the token grid).

    Args:
        channels: channels of the feature map.
        dim: token width (1x1 convolutions project in and out).
        heads, layers, mlp_ratio, dropout: as ``nn.TransformerEncoderLayer``.
    """

    def __init__(self, channels: int, *, dim: int = 512, heads: int = 8, layers: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.proj_in = nn.Conv2d(channels, dim, 1)
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim),
                                             enable_nested_tensor=False)
        self.proj_out = nn.Conv2d(dim, channels, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, C, h, w)
        b, _, h, w = f.shape
        tokens = self.proj_in(f).flatten(2).transpose(1, 2)  # (B, h*w, dim), row-major
        pos = build_sincos2d_pos_embed([h, w], dim=self.dim, device=f.device, dtype=tokens.dtype)
        tokens = self.encoder(tokens + pos)  # pos: (h*w, dim), row-major like tokens
        return f + self.proj_out(tokens.transpose(1, 2).reshape(b, self.dim, h, w))


_RESNET_TRANSFORMER = {
    "base": dict(encoder_name="resnet50", decoder_channels=(256, 128, 64, 32, 16),
                 dim=512, heads=8, layers=4),
    "tiny": dict(encoder_name="resnet18", decoder_channels=(32, 16, 8, 8, 8),
                 dim=32, heads=2, layers=1),
}


def _create_resnet_transformer(*, pretrained: bool | str | Path, encoder_name: str,
                               decoder_channels: tuple[int, ...], dim: int, heads: int,
                               layers: int, dropout: float = 0.1) -> DepthModel:
    bottleneck = partial(BottleneckTransformer, dim=dim, heads=heads, layers=layers, dropout=dropout)
    return create_smp_model(smp.Unet, pretrained=pretrained, encoder_name=encoder_name,
                            decoder_channels=decoder_channels, bottleneck=bottleneck)


@register_model("resnet_transformer")
def resnet_transformer(*, pretrained: bool | str | Path = False, size: str = "base", **kw) -> DepthModel:
    return _create_resnet_transformer(pretrained=pretrained, **{**variant(_RESNET_TRANSFORMER, size), **kw})
