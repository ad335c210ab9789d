"""Mask2Former (Cheng et al., CVPR 2022) with a Swin-S backbone, from Hugging Face, as a depth model.

The paper's head: the last transformer-decoder layer's per-query mask logits (B, Q, H/4, W/4)
are upsampled bilinearly to the input size, then Conv5x5(Q -> 64)-BN-ReLU-Conv1x1(-> 1) gives
log-depth.

Why ``Mask2FormerModel`` and not ``Mask2FormerForUniversalSegmentation``: the mask logits are
computed inside the base model (its transformer decoder holds the mask embedder and returns
``masks_queries_logits`` for every decoder layer); the universal-segmentation wrapper only adds
the query classifier and the Hungarian loss, which a depth head never uses and which would be
parameters without gradients. ``Mask2FormerModel.from_pretrained`` reads the COCO instance
checkpoint (saved from the wrapper) and leaves those two out.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import Mask2FormerConfig, Mask2FormerModel, SwinConfig

from trainables.models.base import (
    DepthModel,
    crop_to,
    depth_head,
    pad_to_multiple,
    upsample_to,
    variant,
)
from trainables.models.registry import PretrainedWeightsError, register_model
from trainables.models.segformer import check_architecture, load_hf_snapshot

HF_ID = "facebook/mask2former-swin-small-coco-instance"
_STAGES = ["stage1", "stage2", "stage3", "stage4"]
_DROPPED_NORM = "pixel_level_module.encoder.swin.layernorm."  # see Mask2FormerDepth.__init__
_MASK2FORMER = {
    # The checkpoint's config (Mask2FormerConfig's defaults are that checkpoint's), spelled out
    # so pretrained=False builds the same network offline.
    "base": dict(hf_id=HF_ID,
                 backbone=dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24],
                               window_size=7, drop_path_rate=0.3),
                 model=dict(num_queries=100, hidden_dim=256, feature_size=256, mask_feature_size=256,
                            encoder_layers=6, decoder_layers=10, num_attention_heads=8)),
    # Test-sized, random init only. decoder_layers=4 gives 3 masked-attention layers, one per
    # feature level, so every level's projection gets a gradient; widths are multiples of 32
    # because the pixel decoder uses GroupNorm(32, .).
    "tiny": dict(hf_id=None,
                 backbone=dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                               window_size=4, drop_path_rate=0.0),
                 model=dict(num_queries=8, hidden_dim=32, feature_size=32, mask_feature_size=32,
                            encoder_layers=1, decoder_layers=4, num_attention_heads=2,
                            encoder_feedforward_dim=64, dim_feedforward=64)),
}
_SHAPE_KEYS = ("num_queries", "hidden_dim", "feature_size", "mask_feature_size", "encoder_layers",
               "decoder_layers", "num_attention_heads", "encoder_feedforward_dim", "dim_feedforward")
_BACKBONE_SHAPE_KEYS = ("embed_dim", "depths", "num_heads", "window_size", "patch_size", "mlp_ratio")


def mask2former_config(size: str) -> Mask2FormerConfig:
    """The ``Mask2FormerConfig`` (Swin backbone) of ``size`` ("base" or "tiny")."""
    kw = variant(_MASK2FORMER, size)
    backbone = SwinConfig(**kw["backbone"], out_features=_STAGES)
    return Mask2FormerConfig(backbone_config=backbone, **kw["model"])


class Mask2FormerDepth(DepthModel):
    """Mask2Former mask logits of the last decoder layer -> Conv5x5-BN-ReLU-Conv1x1 log-depth.

    Args:
        net: a ``Mask2FormerModel``.
        hidden: width of the 5x5 convolution.
    """

    def __init__(self, net: Mask2FormerModel, hidden: int = 64) -> None:
        super().__init__()
        # The backbone's SwinModel ends with a layer norm whose output the backbone discards (it
        # normalises each stage itself) and which no checkpoint holds: drop it, so every
        # remaining parameter is trained.
        net.pixel_level_module.encoder.swin.layernorm = nn.Identity()
        self.net = net
        self.head = nn.Sequential(
            nn.Conv2d(net.config.num_queries, hidden, 5, padding=2, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(inplace=True), depth_head(hidden))

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:
        # Padding to 32 aligns Swin's four stages (1/4 .. 1/32) with the image.
        x, size = pad_to_multiple(x, 32)
        masks = self.net(pixel_values=x).masks_queries_logits[-1]  # (B, Q, H/4, W/4), last layer
        masks = upsample_to(masks, x.shape[-2:])                    # (B, Q, H, W)
        return crop_to(self.head(masks), size)                      # (B, 1, H, W)


def _create_mask2former(*, pretrained: bool | str | Path, size: str) -> Mask2FormerDepth:
    expected = mask2former_config(size)
    if not pretrained:
        return Mask2FormerDepth(Mask2FormerModel(expected))
    hf_id = _MASK2FORMER[size]["hf_id"]
    net, not_loaded = load_hf_snapshot(Mask2FormerModel, pretrained, hf_id=hf_id, model_type="mask2former")
    source = hf_id if pretrained is True else str(pretrained)
    check_architecture(source, (net.config, expected, _SHAPE_KEYS, ""),
                       (net.config.backbone_config, expected.backbone_config, _BACKBONE_SHAPE_KEYS,
                        "backbone_config."))
    # The hub checkpoint has no weights for the Swin norm that Mask2FormerDepth drops.
    missing = [k for k in not_loaded if not k.startswith(_DROPPED_NORM)]
    if missing:
        raise PretrainedWeightsError(
            f"{source}: {len(missing)} weights are not in the snapshot (e.g. {missing[:3]})")
    return Mask2FormerDepth(net)


@register_model("mask2former_swin")
def mask2former_swin(*, pretrained: bool | str | Path = False, size: str = "base") -> DepthModel:
    return _create_mask2former(pretrained=pretrained, size=size)
