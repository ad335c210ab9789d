"""GLPN (Kim et al., 2022, "Global-Local Path Networks for Monocular Depth Estimation with
Vertical CutDepth") from transformers, as a depth model.

A SegFormer MiT-b4 encoder with a light depth decoder (selective feature fusion) and a metric
head, ``sigmoid(z) * max_depth``: the paper's own idea (segmentation encoder, depth decoder)
trained by others. ``dataset`` picks the released checkpoint: ``nyu`` (``vinvino02/glpn-nyu``,
max 10 m) or ``kitti`` (``vinvino02/glpn-kitti``, max 80 m); ``size="tiny"`` is test-sized, random
init only. Log-depth is ``log(max_depth) + logsigmoid(z)`` (``MetricLogDepth``, ``depth_hf``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GLPNConfig, GLPNForDepthEstimation

from trainables.models.base import DepthModel, variant
from trainables.models.depth_hf import HFDepthModel, MetricLogDepth, require_all_loaded
from trainables.models.registry import register_model
from trainables.models.segformer import check_architecture, load_hf_snapshot

_SIZES: dict[str, dict] = {
    # MiT-b4 (GLPNConfig's defaults give heads, sr_ratios, patch sizes and strides).
    "base": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 8, 27, 3], decoder_hidden_size=64),
    # Test-sized, random init only: no weights were ever released for it.
    "tiny": dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2],
                 decoder_hidden_size=8),
}
HUB = {"nyu": "vinvino02/glpn-nyu", "kitti": "vinvino02/glpn-kitti"}
MAX_DEPTH = {"nyu": 10, "kitti": 80}  # the checkpoints' heads: sigmoid * max_depth metres
_KEYS = ("hidden_sizes", "depths", "num_attention_heads", "sr_ratios", "mlp_ratios", "patch_sizes", "strides",
         "num_encoder_blocks", "decoder_hidden_size", "max_depth")


def glpn_config(size: str, dataset: str) -> GLPNConfig:
    """The ``GLPNConfig`` of ``size`` (base, tiny) with ``dataset``'s depth range (nyu, kitti)."""
    if dataset not in MAX_DEPTH:
        raise ValueError(f"unknown GLPN dataset {dataset!r}; valid: {', '.join(MAX_DEPTH)}")
    return GLPNConfig(max_depth=MAX_DEPTH[dataset], **variant(_SIZES, size))


class GLPNDepth(HFDepthModel):
    """GLPN: MiT stages -> decoder (to full resolution) -> head's ``z`` before its sigmoid."""

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        stages = net.glpn(x, output_hidden_states=True).hidden_states  # 1/4 .. 1/32
        decoded = net.decoder(stages)[net.config.head_in_index]          # (B, C, H, W)
        return net.head.head(decoded)                                   # (B, 1, H, W)


@register_model("glpn")
def glpn(*, pretrained: bool | str | Path = False, size: str = "base", dataset: str = "nyu") -> DepthModel:
    """``dataset``: whose checkpoint (and depth range), ``nyu`` or ``kitti``."""
    expected = glpn_config(size, dataset)
    if pretrained:
        hf_id = None if size == "tiny" else HUB[dataset]
        net, not_loaded = load_hf_snapshot(GLPNForDepthEstimation, pretrained, hf_id=hf_id, model_type="glpn")
        source = hf_id if pretrained is True else str(pretrained)
        check_architecture(source, (net.config, expected, _KEYS, ""))
        require_all_loaded(source, not_loaded)
    else:
        net = GLPNForDepthEstimation(expected)
    return GLPNDepth(net, MetricLogDepth(expected.max_depth), 32)
