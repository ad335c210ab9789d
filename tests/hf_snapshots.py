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


def write_released_hub(hf_home: Path, *, seed: int = 0) -> dict[str, float]:
    """Fill ``hf_home`` with every repo of ``RELEASED_HF`` and ``RELEASED_SMP`` (random weights,
    float32) in the hub layout. smp's repos go under the commit smp pins, as it downloads them.

    Returns the parameter count, in millions, of each repo written; raises when one is more than
    0.5% off the published count, that is when a config here is not the released one.
    """
    torch.manual_seed(seed)
    written: dict[str, tuple[float, float]] = {}
    for repo_id, released in RELEASED_HF.items():
        model = released.build()
        written[repo_id] = (_params_m(model), released.params_m)
        save_snapshot(model, hub_snapshot_dir(hf_home, repo_id), drop=released.drop)
    for encoder_name, released in RELEASED_SMP.items():
        repo_id, revision = smp_repo(encoder_name)
        folder = hub_snapshot_dir(hf_home, repo_id, revision)
        net = released.build()
        written[repo_id] = (_params_m(net), released.params_m)
        save_file(net.state_dict(), folder / "model.safetensors", metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(_IMAGENET_PREPROCESSING, indent=2))
    wrong = {k: (round(n, 2), p) for k, (n, p) in written.items() if abs(n - p) > 0.005 * p}
    if wrong:
        raise AssertionError(f"not the released architectures (M params written, published): {wrong}")
    return {k: n for k, (n, _) in written.items()}
