"""The model zoo. Importing this package registers every architecture in ``MODELS``."""

from trainables.models import (  # noqa: F401  (imports register the architectures)
    mask2former,
    mobilenet_unet,
    resnet_transformer,
    segformer,
    smp_models,
    unet,
)
from trainables.models.base import DepthModel
from trainables.models.registry import MODELS, PretrainedWeightsError, build_model, register_model

__all__ = ["MODELS", "DepthModel", "PretrainedWeightsError", "build_model", "register_model"]
