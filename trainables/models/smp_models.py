"""UNet++ and the ImageNet-ResNet50 U-Net from segmentation-models-pytorch (smp), and the smp glue
the other encoder-decoder models share (``resnet_transformer``, ``mobilenet_unet``).

smp >= 0.5 keeps its ImageNet encoder weights on the Hugging Face Hub (``smp-hub/<encoder>.imagenet``),
so ``HF_HOME`` and ``HF_HUB_OFFLINE`` apply to them as to every Hugging Face download.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from trainables.models.base import DepthModel, crop_to, init_log_depth, pad_to_multiple, variant
from trainables.models.registry import PretrainedWeightsError, register_model

SMP_WEIGHTS_FILE = "model.safetensors"
# A loader puts weights into an smp encoder from pretrained=True (the source) or a local directory.
EncoderLoader = Callable[[nn.Module, "bool | str | Path"], None]


class SmpDepthModel(DepthModel):
    """An smp encoder-decoder whose one output channel is log-depth.

    Args:
        net: an smp ``SegmentationModel`` built with ``classes=1``.
        bottleneck: optional module run on the deepest encoder feature, (B, C, h, w) -> same shape.
    """

    def __init__(self, net: smp.base.SegmentationModel, bottleneck: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self.bottleneck = bottleneck
        init_log_depth(net.segmentation_head[0])

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.net.encoder.output_stride)  # smp needs multiples of 32
        feats = self.net.encoder(x)  # [x, (B, C1, H/2, W/2), ..., (B, C5, H/32, W/32)]
        if self.bottleneck is not None:
            feats = [*feats[:-1], self.bottleneck(feats[-1])]
        out = self.net.segmentation_head(self.net.decoder(feats))  # (B, 1, H, W)
        return crop_to(out, size)


def smp_weights_repo(encoder_name: str) -> str:
    """The Hugging Face repo id smp takes ``encoder_name``'s ImageNet weights from."""
    return smp.encoders.encoders[encoder_name]["pretrained_settings"]["imagenet"]["repo_id"]


def load_smp_encoder(encoder: nn.Module, pretrained: bool | str | Path, *, encoder_name: str) -> None:
    """Load smp's ImageNet weights for ``encoder_name``: from the Hub (its cache first, as
    ``HF_HOME`` / ``HF_HUB_OFFLINE`` say) when ``pretrained`` is True, else from a local copy of
    that Hub repo (a directory holding ``model.safetensors``)."""
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    settings = smp.encoders.encoders[encoder_name]["pretrained_settings"]["imagenet"]
    repo = settings["repo_id"]
    how = (f"Provide it with network once (it is cached under HF_HOME, then HF_HUB_OFFLINE=1 works), "
           f"or `hf download {repo} --local-dir DIR` elsewhere and pass pretrained=DIR.")
    if pretrained is True:
        try:
            path = Path(hf_hub_download(repo, SMP_WEIGHTS_FILE, revision=settings["revision"]))
        except Exception as e:  # offline, HTTP, connection or cache misses all mean "cannot be had"
            raise PretrainedWeightsError(
                f"ImageNet {encoder_name} encoder weights (Hugging Face {repo}, via smp) are "
                f"unavailable: {type(e).__name__}: {str(e)[:300]}\n{how}") from e
    else:
        path = Path(pretrained) / SMP_WEIGHTS_FILE
        if not path.is_file():
            raise PretrainedWeightsError(
                f"{Path(pretrained)}: neither a depth-grid save (config.json + model.pt) nor a copy "
                f"of {repo} ({SMP_WEIGHTS_FILE}). {how}")
    try:
        encoder.load_state_dict(load_file(path, device="cpu"))
    except (RuntimeError, OSError) as e:
        raise PretrainedWeightsError(f"{path}: not {encoder_name} encoder weights: {e}") from e


def create_smp_model(arch: type[smp.base.SegmentationModel], *, pretrained: bool | str | Path,
                     encoder_name: str, decoder_channels: tuple[int, ...],
                     bottleneck: Callable[[int], nn.Module] | None = None,
                     load_encoder: EncoderLoader | None = None) -> SmpDepthModel:
    """Build ``arch`` (smp.Unet, smp.UnetPlusPlus, ...) around ``encoder_name`` as a depth model.

    Args:
        pretrained: False, True (the encoder's documented source) or a local directory.
        bottleneck: builds the module for the deepest feature from its channel count.
        load_encoder: replaces the smp-hub loader (MobileNetV2 takes torchvision's file).
    """
    net = arch(encoder_name=encoder_name, encoder_weights=None,
               decoder_channels=tuple(decoder_channels), classes=1)
    if pretrained:
        if load_encoder is None:
            load_smp_encoder(net.encoder, pretrained, encoder_name=encoder_name)
        else:
            load_encoder(net.encoder, pretrained)
    extra = bottleneck(net.encoder.out_channels[-1]) if bottleneck is not None else None
    return SmpDepthModel(net, extra)


# Tiny variants keep a whole resnet18 (a shallower smp encoder leaves later stages without
# gradients) and thin the decoder; they exist for CPU tests.
_TINY = dict(encoder_name="resnet18", decoder_channels=(32, 16, 8, 8, 8))
_UNETPP = {"base": dict(encoder_name="resnet34", decoder_channels=(256, 128, 64, 32, 16)), "tiny": _TINY}
_RESNET_UNET = {"base": dict(encoder_name="resnet50", decoder_channels=(256, 128, 64, 32, 16)),
                "tiny": _TINY}


@register_model("unetpp")
def unetpp(*, pretrained: bool | str | Path = False, size: str = "base", **kw) -> DepthModel:
    return create_smp_model(smp.UnetPlusPlus, pretrained=pretrained, **{**variant(_UNETPP, size), **kw})


@register_model("resnet_unet")
def resnet_unet(*, pretrained: bool | str | Path = False, size: str = "base", **kw) -> DepthModel:
    return create_smp_model(smp.Unet, pretrained=pretrained, **{**variant(_RESNET_UNET, size), **kw})
