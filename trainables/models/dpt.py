"""DPT (Ranftl et al., ICCV 2021) from transformers, as a depth model: the MiDaS 3.0 checkpoints.

``DPTForDepthEstimation`` with the released relative-depth weights (affine-invariant disparity,
mapped to log-depth by ``InverseLogDepth``, ``depth_hf``):

- ``size="large"`` (default): ``Intel/dpt-large``, ViT-L/16;
- ``size="hybrid"``: ``Intel/dpt-hybrid-midas``, ViT-B/16 on a ResNet-50 (BiT) stem, whose
  stages 1 and 2 feed the decoder directly;
- ``tiny`` / ``tiny_hybrid``: test-sized, random init only.

The ViT runs at any input size (a multiple of 32 after padding). transformers'
``DPTForDepthEstimation.forward`` assumes a square token grid for ViT backbones and the hybrid's
embeddings refuse any size but 384x384, so ``pre_activation`` calls the same modules with the
grid's height and width (the position embeddings are resized to it, as both always do).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import DPTConfig, DPTForDepthEstimation

from trainables.models.base import DepthModel, variant
from trainables.models.depth_hf import (
    HFDepthModel,
    InverseLogDepth,
    freeze_unused,
    require_all_loaded,
)
from trainables.models.registry import register_model
from trainables.models.segformer import check_architecture, load_hf_snapshot

# BiT-ResNet-50 stem of the hybrid (the released config's backbone_config): its stages 1-2
# (256, 512 channels at 1/4, 1/8) are the decoder's first two features, stage 3 (1024 at 1/16)
# is tokenised for the ViT.
_BIT = dict(layer_type="bottleneck", global_padding="same", depths=[3, 4, 9], embedding_dynamic_padding=True,
            out_features=["stage1", "stage2", "stage3"])
_TINY_BIT = dict(_BIT, hidden_sizes=[16, 32, 64, 128], embedding_size=8, depths=[1, 1, 1], num_groups=2)
_TINY_VIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2, image_size=64,
                 fusion_hidden_size=16)
_SIZES: dict[str, dict] = {
    "large": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024]),
    "hybrid": dict(is_hybrid=True, backbone_config=_BIT, backbone_featmap_shape=[1, 1024, 24, 24],
                   backbone_out_indices=[2, 5, 8, 11], reassemble_factors=[1, 1, 1, 0.5],
                   neck_hidden_sizes=[256, 512, 768, 768]),  # ViT-B: DPTConfig's defaults
    # Test-sized, random init only: no weights were ever released for them.
    "tiny": dict(_TINY_VIT, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32]),
    "tiny_hybrid": dict(_TINY_VIT, is_hybrid=True, backbone_config=_TINY_BIT, backbone_featmap_shape=[1, 64, 4, 4],
                        backbone_out_indices=[0, 1, 2, 3], reassemble_factors=[1, 1, 1, 0.5],
                        neck_hidden_sizes=[16, 32, 32, 32]),
}
HUB = {"large": "Intel/dpt-large", "hybrid": "Intel/dpt-hybrid-midas"}
_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size", "is_hybrid",
         "backbone_out_indices", "reassemble_factors", "neck_hidden_sizes", "fusion_hidden_size", "readout_type",
         "use_batch_norm_in_fusion_residual", "add_projection")
_BIT_KEYS = ("hidden_sizes", "depths", "embedding_size", "layer_type", "num_groups")
# Never on the depth path (depth_hf.freeze_unused): the ViT's final norm (transformers computes it
# and discards it) and the first fusion layer's residual unit (called with no residual).
_UNUSED = ("dpt.layernorm.", "neck.fusion_stage.layers.0.residual_layer1.")


def dpt_config(size: str) -> DPTConfig:
    """The ``DPTConfig`` of ``size`` (large, hybrid, tiny, tiny_hybrid)."""
    return DPTConfig(**variant(_SIZES, size))


class DPTDepth(HFDepthModel):
    """DPT: ViT (or hybrid) tokens from four layers -> reassemble + fusion -> head's ``z``."""

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        net, cfg = self.net, self.net.config
        dpt = net.dpt
        embedded = dpt.embeddings(x, interpolate_pos_encoding=True) if cfg.is_hybrid else dpt.embeddings(x)
        tokens, layers = embedded.last_hidden_states, []   # (B, 1 + h*w, C), the class token first
        for layer in dpt.encoder.layer:
            tokens = layer(tokens)
            layers.append(tokens)
        if cfg.is_hybrid:  # BiT stages 1-2, then the ViT layers of the last two indices
            features = [*embedded.intermediate_activations, *(layers[i] for i in cfg.backbone_out_indices[2:])]
        else:
            features = [layers[i] for i in cfg.backbone_out_indices]
        grid = (x.shape[-2] // cfg.patch_size, x.shape[-1] // cfg.patch_size)
        return net.head(net.neck(features, *grid)).unsqueeze(1)  # (B, 1, H, W)


@register_model("dpt")
def dpt(*, pretrained: bool | str | Path = False, size: str = "large") -> DepthModel:
    expected = dpt_config(size)
    if pretrained:
        hf_id = HUB.get(size)
        net, not_loaded = load_hf_snapshot(DPTForDepthEstimation, pretrained, hf_id=hf_id, model_type="dpt")
        source = hf_id if pretrained is True else str(pretrained)
        checks = [(net.config, expected, _KEYS, "")]
        if expected.is_hybrid:
            checks.append((net.config.backbone_config, expected.backbone_config, _BIT_KEYS, "backbone_config."))
        check_architecture(source, *checks)
        require_all_loaded(source, not_loaded, _UNUSED)
    else:
        net = DPTForDepthEstimation(expected)
    net.head.head[-1] = nn.Identity()  # the head's last ReLU: ``to_log`` maps its z
    freeze_unused(net, _UNUSED)
    return DPTDepth(net, InverseLogDepth(), 32)
