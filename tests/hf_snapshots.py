"""Hugging Face snapshots for tests, written the way the released ones are read.

- ``save_snapshot``: a ``save_pretrained`` folder (what ``pretrained=DIR`` reads), optionally in
  another dtype and without the weights the released checkpoints lack.
- ``write_released_hub``: a Hugging Face cache (``HF_HOME``) holding, in the hub layout
  ``huggingface_hub`` reads offline, every repo the zoo loads at its default sizes: the released
  repos' own configs with random weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torchvision
from huggingface_hub import constants
from huggingface_hub.file_download import repo_folder_name
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
    DPTConfig,
    DPTForDepthEstimation,
    GLPNConfig,
    GLPNForDepthEstimation,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    SegformerConfig,
    SegformerForSemanticSegmentation,
    SwinConfig,
)

# Weights the released checkpoints do not hold: BN step counters (SegFormer's were converted
# from mmseg, which saved none) and the Swin backbone's final norm (Mask2Former never uses it).
NO_BN_COUNTERS = "num_batches_tracked"
SWIN_NORM = "encoder.swin.layernorm."


def save_snapshot(model: nn.Module, folder: Path, *, drop: tuple[str, ...] = (),
                  dtype: torch.dtype | None = None) -> Path:
    """``model.save_pretrained(folder)``, converted to ``dtype`` (in place) if given, without
    weights whose name contains one of ``drop``. Returns ``folder``."""
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder)
    if drop:
        weights = folder / "model.safetensors"
        kept = {k: v for k, v in load_file(weights).items() if not any(d in k for d in drop)}
        save_file(kept, weights, metadata={"format": "pt"})
    return folder


def hub_snapshot_dir(hf_home: Path, repo_id: str, revision: str | None = None) -> Path:
    """The folder ``hf_hub_download`` / ``from_pretrained`` read ``repo_id`` from offline:
    ``HF_HOME/hub/models--ORG--NAME/snapshots/<commit>/``. ``revision`` is a pinned commit (as
    smp pins its encoder repos); without one, the main branch: ``refs/main`` names a commit."""
    repo = Path(hf_home) / "hub" / repo_folder_name(repo_id=repo_id, repo_type=constants.REPO_TYPE_MODEL)
    commit = revision or hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex commit id
    if revision is None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / constants.DEFAULT_REVISION).write_text(commit)
    folder = repo / "snapshots" / commit
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# The architecture fields of the released repos' config.json, as data kept apart from the zoo's
# tables (the loading code checks the zoo against them). Fields left out are the config class
# defaults, which are those repos' values. The parameter counts the papers and torchvision's
# docs publish confirm each config (``write_released_hub`` checks them).
_ADE_SEGFORMER = dict(
    hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1],
    patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], mlp_ratios=[4, 4, 4, 4], num_encoder_blocks=4,
    decoder_hidden_size=768, drop_path_rate=0.1, classifier_dropout_prob=0.1, layer_norm_eps=1e-6,
    num_labels=150, semantic_loss_ignore_index=255)  # ADE20k's 150 classes
_SWIN_S = dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7,
               patch_size=4, mlp_ratio=4.0, drop_path_rate=0.3, image_size=224,
               out_features=["stage1", "stage2", "stage3", "stage4"])


@dataclass(frozen=True)
class Released:
    """A released checkpoint: how to build its architecture, its published size, and the
    weight names (substrings) its file does not hold."""

    build: Callable[[], nn.Module]
    params_m: float
    drop: tuple[str, ...] = ()


RELEASED_HF: dict[str, Released] = {
    "nvidia/segformer-b4-finetuned-ade-512-512": Released(
        lambda: SegformerForSemanticSegmentation(SegformerConfig(depths=[3, 8, 27, 3], **_ADE_SEGFORMER)),
        64.1, (NO_BN_COUNTERS,)),
    "nvidia/segformer-b5-finetuned-ade-640-640": Released(
        lambda: SegformerForSemanticSegmentation(SegformerConfig(depths=[3, 6, 40, 3], **_ADE_SEGFORMER)),
        84.7, (NO_BN_COUNTERS,)),
    "facebook/mask2former-swin-small-coco-instance": Released(
        lambda: Mask2FormerForUniversalSegmentation(Mask2FormerConfig(
            backbone_config=SwinConfig(**_SWIN_S), num_labels=80, num_queries=100, hidden_dim=256,
            feature_size=256, mask_feature_size=256, encoder_layers=6, decoder_layers=10,
            num_attention_heads=8, encoder_feedforward_dim=1024, dim_feedforward=2048)),
        69.0, (SWIN_NORM,)),  # COCO's 80 classes; the paper gives 69M
}


def _depth_anything(hidden: int, heads: int, layers: int, out_indices: list[int], neck: list[int],
                    fusion: int, **kind) -> Callable[[], nn.Module]:
    """A released Depth Anything V2 config: DINOv2 ViT at 518 px, 14-px patches, DPT decoder."""
    backbone = dict(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers, out_indices=out_indices,
                    image_size=518, patch_size=14, reshape_hidden_states=False)
    return lambda: DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=Dinov2Config(**backbone), reassemble_hidden_size=hidden, patch_size=14,
        neck_hidden_sizes=neck, fusion_hidden_size=fusion, **kind))


# The depth-pretrained repos (issue 22), kept apart from RELEASED_HF so that the paper's zoo
# (write_released_hub's default) does not write their ~6 GB. Published counts: the Depth Anything
# V2 README (24.8M, 97.5M, 335.3M); the DPT paper (343M; the hybrid's 123M less timm's 0.77M
# ImageNet head, which the conversion drops); GLPN's 245 MB float32 files on the Hub.
_DA2 = {"Small": ((384, 6, 12, [3, 6, 9, 12], [48, 96, 192, 384], 64), 24.8),
        "Base": ((768, 12, 12, [3, 6, 9, 12], [96, 192, 384, 768], 128), 97.5),
        "Large": ((1024, 16, 24, [5, 12, 18, 24], [256, 512, 1024, 1024], 256), 335.3)}
_BIT_R50 = dict(layer_type="bottleneck", global_padding="same", depths=[3, 4, 9], embedding_dynamic_padding=True,
                out_features=["stage1", "stage2", "stage3"])
_MIT_B4 = dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 8, 27, 3], decoder_hidden_size=64)
RELEASED_DEPTH_HF: dict[str, Released] = {
    **{f"depth-anything/Depth-Anything-V2-{size}-hf": Released(_depth_anything(*cfg), params)
       for size, (cfg, params) in _DA2.items()},
    **{f"depth-anything/Depth-Anything-V2-Metric-Indoor-{size}-hf": Released(
        _depth_anything(*cfg, depth_estimation_type="metric", max_depth=20), params)
       for size, (cfg, params) in _DA2.items()},
    "Intel/dpt-large": Released(lambda: DPTForDepthEstimation(DPTConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024])), 343.0),
    "Intel/dpt-hybrid-midas": Released(lambda: DPTForDepthEstimation(DPTConfig(
        is_hybrid=True, backbone_config=_BIT_R50, backbone_featmap_shape=[1, 1024, 24, 24],
        backbone_out_indices=[2, 5, 8, 11], reassemble_factors=[1, 1, 1, 0.5],
        neck_hidden_sizes=[256, 512, 768, 768])), 122.4),
    "vinvino02/glpn-nyu": Released(lambda: GLPNForDepthEstimation(GLPNConfig(max_depth=10, **_MIT_B4)), 61.2),
    "vinvino02/glpn-kitti": Released(lambda: GLPNForDepthEstimation(GLPNConfig(max_depth=80, **_MIT_B4)), 61.2),
}
# smp's ImageNet encoder repos hold torchvision's ResNet state dict (classifier included) as
# model.safetensors, and the preprocessing smp reads from config.json.
RELEASED_SMP: dict[str, Released] = {
    "resnet34": Released(torchvision.models.resnet34, 21.8),
    "resnet50": Released(torchvision.models.resnet50, 25.6),
}
_IMAGENET_PREPROCESSING = {"input_space": "RGB", "input_range": [0, 1],
                           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def smp_repo(encoder_name: str) -> tuple[str, str]:
    """The repo id and the commit smp pins for ``encoder_name``'s ImageNet weights."""
    settings = smp.encoders.encoders[encoder_name]["pretrained_settings"]["imagenet"]
    return settings["repo_id"], settings["revision"]


def released_weights(hf_home: Path, repo_id: str) -> dict[str, torch.Tensor]:
    """The state dict ``write_released_hub`` wrote for ``repo_id`` under ``hf_home``."""
    pins = dict(smp_repo(name) for name in RELEASED_SMP)
    return load_file(hub_snapshot_dir(hf_home, repo_id, pins.get(repo_id)) / "model.safetensors")


def _params_m(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def write_released_hub(hf_home: Path, *, seed: int = 0, repos: tuple[str, ...] | None = None) -> dict[str, float]:
    """Fill ``hf_home`` with every repo of ``RELEASED_HF`` and ``RELEASED_SMP`` (random weights,
    float32) in the hub layout, or with ``repos`` only (any of ``RELEASED_HF``,
    ``RELEASED_DEPTH_HF``, and smp's encoder names, e.g. ``"resnet50"``). smp's repos go under the
    commit smp pins, as it downloads them.

    Returns the parameter count, in millions, of each repo written; raises when one is more than
    0.5% off the published count, that is when a config here is not the released one.
    """
    torch.manual_seed(seed)
    hf = RELEASED_HF if repos is None else {r: {**RELEASED_HF, **RELEASED_DEPTH_HF}[r] for r in repos
                                             if r not in RELEASED_SMP}
    smp_encoders = RELEASED_SMP if repos is None else {r: RELEASED_SMP[r] for r in repos if r in RELEASED_SMP}
    written: dict[str, tuple[float, float]] = {}
    for repo_id, released in hf.items():
        model = released.build()
        written[repo_id] = (_params_m(model), released.params_m)
        save_snapshot(model, hub_snapshot_dir(hf_home, repo_id), drop=released.drop)
    for encoder_name, released in smp_encoders.items():
        repo_id, revision = smp_repo(encoder_name)
        folder = hub_snapshot_dir(hf_home, repo_id, revision)
        net = released.build()
        written[repo_id] = (_params_m(net), released.params_m)
        save_file(net.state_dict(), folder / "model.safetensors", metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(_IMAGENET_PREPROCESSING, indent=2))
    _check_counts(written)
    return {k: n for k, (n, _) in written.items()}


def _check_counts(counts: dict[str, tuple[float, float]]) -> None:
    wrong = {k: (round(n, 2), p) for k, (n, p) in counts.items() if abs(n - p) > 0.005 * p}
    if wrong:
        raise AssertionError(f"not the released architectures (M params written, published): {wrong}")


def released_params_m(repos: tuple[str, ...]) -> dict[str, float]:
    """The parameter counts, in millions, of ``repos``' released configs, built on the meta device
    (no memory, no init: for the big ones no test writes); checked as ``write_released_hub`` checks."""
    table = {**RELEASED_HF, **RELEASED_DEPTH_HF}
    counts = {}
    for repo_id in repos:
        with torch.device("meta"):
            counts[repo_id] = (_params_m(table[repo_id].build()), table[repo_id].params_m)
    _check_counts(counts)
    return {k: n for k, (n, _) in counts.items()}
