"""The model zoo. Importing this package registers every architecture in ``MODELS``."""

from trainables.models.base import DepthModel
from trainables.models.registry import MODELS, PretrainedWeightsError, build_model, register_model

__all__ = ["MODELS", "DepthModel", "PretrainedWeightsError", "build_model", "register_model"]
