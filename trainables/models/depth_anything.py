"""Depth Anything V2 (Yang et al., NeurIPS 2024) from transformers, as depth models.

A DINOv2 ViT encoder (14-pixel patches) with a DPT decoder, ``DepthAnythingForDepthEstimation``:

- ``depth_anything_v2``: the released relative-depth checkpoints (affine-invariant disparity),
  mapped to log-depth by ``InverseLogDepth`` (``depth_hf``).
- ``depth_anything_v2_metric``: the indoor metric fine-tunes (Hypersim, ``sigmoid * 20`` m),
  mapped by ``MetricLogDepth``.

``size``: ``small`` (the default; the only one under Apache-2.0), ``base``, ``large``, or the
test-sized ``tiny`` (random init only). The input is padded to a multiple of 14.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

from trainables.models.base import DepthModel, variant
from trainables.models.depth_hf import HFDepthModel, freeze_unused, output_map, require_all_loaded
from trainables.models.registry import register_model
from trainables.models.segformer import check_architecture, load_hf_snapshot

PATCH = 14
METRIC_INDOOR_MAX_DEPTH = 20  # the indoor (Hypersim) fine-tunes' head: sigmoid * 20 m
# The released configs (DINOv2 ViT-S/B/L at 518 px): encoder width, heads, depth, the layers the
# decoder reads (V2 takes intermediate layers; V1 took the last four) and the decoder widths.
_SIZES: dict[str, dict] = {
    "small": dict(hidden_size=384, num_attention_heads=6, num_hidden_layers=12, out_indices=[3, 6, 9, 12],
                  neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64),
    "base": dict(hidden_size=768, num_attention_heads=12, num_hidden_layers=12, out_indices=[3, 6, 9, 12],
                 neck_hidden_sizes=[96, 192, 384, 768], fusion_hidden_size=128),
    "large": dict(hidden_size=1024, num_attention_heads=16, num_hidden_layers=24, out_indices=[5, 12, 18, 24],
                  neck_hidden_sizes=[256, 512, 1024, 1024], fusion_hidden_size=256),
    # Test-sized, random init only: no weights were ever released for it.
    "tiny": dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=4, out_indices=[1, 2, 3, 4],
                 neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8, image_size=56),
}
HUB = {size: f"depth-anything/Depth-Anything-V2-{size.title()}-hf" for size in ("small", "base", "large")}
HUB_METRIC = {size: f"depth-anything/Depth-Anything-V2-Metric-Indoor-{size.title()}-hf"
              for size in ("small", "base", "large")}
# Config fields that decide the weights' shapes or what the decoder reads.
_KEYS = ("reassemble_hidden_size", "neck_hidden_sizes", "fusion_hidden_size", "head_hidden_size",
         "reassemble_factors", "patch_size", "depth_estimation_type")
_BACKBONE_KEYS = ("hidden_size", "num_attention_heads", "num_hidden_layers", "mlp_ratio", "patch_size",
                  "out_indices", "use_swiglu_ffn")
# Never on the depth path (depth_hf.freeze_unused): DINOv2's masked-image-modelling token, and the
# residual unit of the first fusion layer, which transformers builds but calls with no residual.
_UNUSED = ("backbone.embeddings.mask_token", "neck.fusion_stage.layers.0.residual_layer1.")


def depth_anything_config(size: str, *, metric: bool) -> DepthAnythingConfig:
    """The ``DepthAnythingConfig`` of ``size`` (small, base, large, tiny), relative or metric."""
    kw = variant(_SIZES, size)
    backbone = Dinov2Config(
        hidden_size=kw.pop("hidden_size"), num_attention_heads=kw.pop("num_attention_heads"),
        num_hidden_layers=kw.pop("num_hidden_layers"), out_indices=kw.pop("out_indices"),
        image_size=kw.pop("image_size", 518), patch_size=PATCH, reshape_hidden_states=False)
    kind = dict(depth_estimation_type="metric", max_depth=METRIC_INDOOR_MAX_DEPTH) if metric else \
        dict(depth_estimation_type="relative")
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=backbone.hidden_size,
                               patch_size=PATCH, **kind, **kw)


class DepthAnythingDepth(HFDepthModel):
    """Depth Anything: the head's last activation (ReLU or sigmoid) is left to ``to_log``."""

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=x).predicted_depth.unsqueeze(1)  # (B, 1, H, W): z itself


def _create(size: str, pretrained: bool | str | Path, *, metric: bool) -> DepthAnythingDepth:
    expected = depth_anything_config(size, metric=metric)
    if pretrained:
        hf_id = None if size == "tiny" else (HUB_METRIC if metric else HUB)[size]
        net, not_loaded = load_hf_snapshot(DepthAnythingForDepthEstimation, pretrained, hf_id=hf_id,
                                           model_type="depth_anything")
        source = hf_id if pretrained is True else str(pretrained)
        keys = (*_KEYS, "max_depth") if metric else _KEYS  # a relative head ignores max_depth
        check_architecture(source, (net.config, expected, keys, ""),
                           (net.config.backbone_config, expected.backbone_config, _BACKBONE_KEYS,
                            "backbone_config."))
        require_all_loaded(source, not_loaded, _UNUSED)
    else:
        net = DepthAnythingForDepthEstimation(expected)
    # The head emits z: its last activation and its metric scale move to ``to_log``.
    net.head.activation2, net.head.max_depth = nn.Identity(), 1
    freeze_unused(net, _UNUSED)
    return DepthAnythingDepth(net, output_map(not metric, net.config.max_depth), PATCH)


@register_model("depth_anything_v2")
def depth_anything_v2(*, pretrained: bool | str | Path = False, size: str = "small") -> DepthModel:
    return _create(size, pretrained, metric=False)


@register_model("depth_anything_v2_metric")
def depth_anything_v2_metric(*, pretrained: bool | str | Path = False, size: str = "small") -> DepthModel:
    return _create(size, pretrained, metric=True)
