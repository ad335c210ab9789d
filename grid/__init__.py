"""Driver side of depth-grid: CLI entry points, split, leaderboard, prediction.

The Python API: ``from grid import load_model`` (``grid.model``). Loaded on first use, so that
``import grid`` stays light (no torch, no model zoo).
"""

from typing import Any

_LAZY = {"load_model": "grid.model"}

__all__ = ["load_model"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'grid' has no attribute {name!r}")
