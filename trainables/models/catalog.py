"""What the zoo holds, known without importing it: names, weight sources, encoders, Hub repos.

The builders need torch, transformers, timm and smp (seconds to import); the driver's checks
before a run (an architecture's name, whether its weights are on this machine) need only these
facts. Each architecture module registers its builder under a name listed here and takes the
entry's facts from here (``register_model(name)``), so the two cannot drift; a plugin's
``register_model(name, source=..., description=...)`` adds an entry of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ArchInfo:
    """The facts of one architecture.

    Attributes:
        source: where ``pretrained=True`` takes its weights from, in words ("none ..." if nowhere).
        description: one line for ``depth-grid models``.
        encoder: parameter-name prefixes of the (pretrained) encoder: the group that
            ``encoder_lr_mult`` gives its own learning rate.
        module: the module whose import registers the builder ("" for a plugin's).
        hub: Hugging Face repo that ``pretrained=True`` downloads, per variant (see ``variant_key``).
        hub_file: a file of that repo whose presence in the cache means the weights are there.
        revision: the commit ``pretrained=True`` pins (smp pins its encoders'), else the main branch.
        variant_key: the builder keyword that picks the ``hub`` variant.
        licence: the licence the released weights come under, as their source states it.
        params_m: the released checkpoints' parameter counts, in millions, per ``hub`` variant
            (tests/hf_snapshots.py checks the configs against them).
    """

    source: str
    description: str
    encoder: tuple[str, ...] = ()
    module: str = ""
    hub: Mapping[str, str] = field(default_factory=dict)
    hub_file: str = "config.json"
    revision: str | None = None
    variant_key: str = "size"
    licence: str = ""
    params_m: Mapping[str, float] = field(default_factory=dict)

    @property
    def has_released_weights(self) -> bool:
        """False for architectures trained from scratch by design (``source="none ..."``)."""
        return not self.source.startswith("none")

    def hub_repo(self, kwargs: Mapping[str, Any]) -> str | None:
        """The Hub repo ``pretrained=True`` reads for builder keywords ``kwargs``; None when it
        reads none (no Hub weights, or the test-sized ``tiny`` variant, which has none)."""
        if not self.hub or kwargs.get("size", "base") == "tiny":
            return None
        default = next(iter(self.hub))
        return self.hub.get(str(kwargs.get(self.variant_key, default)))


_M = "trainables.models."
_SMP = "ImageNet {enc} encoder: Hugging Face smp-hub/{enc}.imagenet (smp)"
# The commits smp 0.6 pins for its encoders' ImageNet weights (tests/test_catalog.py checks them).
_SMP_REVISION = {"resnet34": "7a57b34f723329ff020b3f8bc41771163c519d0c",
                 "resnet50": "00cb74e366966d59cd9a35af57e618af9f88efe9"}
_SEGFORMER = {f"b{i}": f"nvidia/segformer-b{i}-finetuned-ade-{'640-640' if i == 5 else '512-512'}"
              for i in range(6)}
_NVIDIA = "NVIDIA Source Code License for SegFormer (non-commercial research)"
_DA2 = "Depth-Anything-V2-{size}-hf"
_DA2_METRIC = "Depth-Anything-V2-Metric-Indoor-{size}-hf"
_DA2_SIZES = {"small": 24.8, "base": 97.5, "large": 335.3}  # the Depth Anything V2 README's counts
_DA2_LICENCE = ("small: Apache-2.0; base, large: CC-BY-NC-4.0 (non-commercial) "
                "(Depth Anything V2 README, github.com/DepthAnything/Depth-Anything-V2)")

BUILT_IN: dict[str, ArchInfo] = {
    "unet": ArchInfo(
        source="none (trained from scratch)", module=_M + "unet", encoder=("down.",),
        description="canonical U-Net (Ronneberger et al. 2015), 64..1024 channels"),
    "unetpp": ArchInfo(
        source=_SMP.format(enc="resnet34"), module=_M + "smp_models", encoder=("net.encoder.",),
        hub={"base": "smp-hub/resnet34.imagenet"}, hub_file="model.safetensors", revision=_SMP_REVISION["resnet34"],
        description="UNet++ (Zhou et al. 2018, nested dense skips), smp, ResNet34 encoder"),
    "resnet_unet": ArchInfo(
        source=_SMP.format(enc="resnet50"), module=_M + "smp_models", encoder=("net.encoder.",),
        hub={"base": "smp-hub/resnet50.imagenet"}, hub_file="model.safetensors", revision=_SMP_REVISION["resnet50"],
        description="U-Net decoder with skips on an ImageNet ResNet50 encoder, smp"),
    "resnet_transformer": ArchInfo(
        source=_SMP.format(enc="resnet50") + "; transformer and decoder from scratch",
        module=_M + "resnet_transformer", encoder=("net.encoder.",),
        hub={"base": "smp-hub/resnet50.imagenet"}, hub_file="model.safetensors", revision=_SMP_REVISION["resnet50"],
        description="ResNet50 + 4 transformer encoder layers on the bottleneck + U-Net decoder"),
    "mobilenet_unet": ArchInfo(
        source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (mobilenet_v2-b0353104.pth) "
               "in the torch hub cache; `depth-grid weights fetch` places it offline",
        module=_M + "mobilenet_unet", encoder=("net.encoder.",), licence="BSD-3-Clause (torchvision)",
        description="U-Net decoder with skips on an ImageNet MobileNetV2 encoder, smp"),
    "mask2former_swin": ArchInfo(
        source="Hugging Face facebook/mask2former-swin-small-coco-instance",
        module=_M + "mask2former", encoder=("net.pixel_level_module.encoder.",),
        hub={"base": "facebook/mask2former-swin-small-coco-instance"},
        description="Mask2Former Swin-S: last-layer query masks -> Conv5x5-BN-ReLU-Conv1x1"),
    "segformer_b4": ArchInfo(
        source=f"Hugging Face {_SEGFORMER['b4']}", module=_M + "segformer", encoder=("net.segformer.",),
        hub={"base": _SEGFORMER["b4"]}, licence=_NVIDIA,
        description="SegFormer-B4 encoder + all-MLP decode head (1 channel), 4x bilinear"),
    "segformer_b5": ArchInfo(
        source=f"Hugging Face {_SEGFORMER['b5']}", module=_M + "segformer", encoder=("net.segformer.",),
        hub={"base": _SEGFORMER["b5"]}, licence=_NVIDIA,
        description="SegFormer-B5 encoder + all-MLP decode head (1 channel), 4x bilinear"),
    "segformer_unet": ArchInfo(
        source="Hugging Face nvidia/segformer-b{0..5}-finetuned-ade-* encoder (b4 by default)",
        module=_M + "segformer", encoder=("encoder.",),
        hub={"b4": _SEGFORMER["b4"], **_SEGFORMER}, variant_key="encoder", licence=_NVIDIA,
        description="SegFormer encoder + U-Net decoder: skips from 4 stages + full-res stem"),
    # Depth-pretrained (issue 22): what each checkpoint predicts and how forward_log maps it are in
    # trainables/models/depth_hf.py and docs/models.md.
    "depth_anything_v2": ArchInfo(
        source="Hugging Face depth-anything/" + _DA2.format(size="{Small,Base,Large}") + " (size=small by default)",
        module=_M + "depth_anything", encoder=("net.backbone.",),
        hub={s: "depth-anything/" + _DA2.format(size=s.title()) for s in _DA2_SIZES}, params_m=_DA2_SIZES,
        licence=_DA2_LICENCE,
        description="Depth Anything V2 (DINOv2 + DPT decoder), relative inverse depth -> learned scale/shift"),
    "depth_anything_v2_metric": ArchInfo(
        source="Hugging Face depth-anything/" + _DA2_METRIC.format(size="{Small,Base,Large}")
               + " (Hypersim, size=small by default)",
        module=_M + "depth_anything", encoder=("net.backbone.",),
        hub={s: "depth-anything/" + _DA2_METRIC.format(size=s.title()) for s in _DA2_SIZES}, params_m=_DA2_SIZES,
        licence=_DA2_LICENCE,
        description="Depth Anything V2 metric indoor (DINOv2 + DPT decoder), metric depth, max 20 m"),
    "dpt": ArchInfo(
        source="Hugging Face Intel/dpt-large (size=large, the default) or Intel/dpt-hybrid-midas (size=hybrid)",
        module=_M + "dpt", encoder=("net.dpt.",),
        hub={"large": "Intel/dpt-large", "hybrid": "Intel/dpt-hybrid-midas"},
        # The DPT paper's 343M and 123M; the hybrid's 123M counts timm's 1000-class ImageNet head
        # (0.77M), which the Hugging Face conversion drops.
        params_m={"large": 343.0, "hybrid": 122.4},
        licence="Apache-2.0 (Hugging Face model cards of Intel/dpt-large and Intel/dpt-hybrid-midas)",
        description="DPT / MiDaS 3.0 (ViT-L/16, or ViT-B/16 on a ResNet-50 stem), relative inverse depth"),
    "glpn": ArchInfo(
        source="Hugging Face vinvino02/glpn-nyu (dataset=nyu, the default) or vinvino02/glpn-kitti (dataset=kitti)",
        module=_M + "glpn", encoder=("net.glpn.",),
        hub={"nyu": "vinvino02/glpn-nyu", "kitti": "vinvino02/glpn-kitti"}, variant_key="dataset",
        params_m={"nyu": 61.2, "kitti": 61.2},  # the Hub's 245 MB float32 files; the paper rounds to 62M
        licence="Apache-2.0 per the Hugging Face model card (written by the HF team; the GLPDepth repo "
                "states no licence)",
        description="GLPN: SegFormer MiT-b4 encoder + depth decoder, metric depth (nyu: max 10 m, kitti: 80 m)"),
}


def architectures() -> dict[str, ArchInfo]:
    """Every architecture a run can name: the built-in ones, and those a loaded plugin registered
    (a plugin imports the registry; without one, nothing heavy is imported here)."""
    found = dict(BUILT_IN)
    registry = sys.modules.get(_M + "registry")
    if registry is not None:
        found.update({name: entry.info for name, entry in registry.MODELS.items()})
    return found
