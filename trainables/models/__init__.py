"""The model zoo. ``MODELS``, ``build_model``... import every architecture module on first use;
``trainables.models.catalog`` answers names and weight sources without importing any of them."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MODELS", "DepthModel", "PretrainedWeightsError", "build_model", "register_model"]


def register_all() -> None:
    """Import every built-in architecture module (each registers its builders in ``MODELS``)."""
    from trainables.models.catalog import BUILT_IN

    for module in dict.fromkeys(info.module for info in BUILT_IN.values()):
        importlib.import_module(module)


def __getattr__(name: str) -> Any:  # PEP 562: the zoo's libraries load when it is first used
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    register_all()
    from trainables.models import base, registry

    return getattr(base if name == "DepthModel" else registry, name)
