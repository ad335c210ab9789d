"""Driver side of depth-grid: CLI entry points, split, leaderboard, prediction.

The Python API: ``from grid import run_grid, load_model`` (``grid.api``, ``grid.model``).
Loaded on first use, so that ``import grid`` (and every ``depth-grid`` subcommand) stays light.
"""

from typing import Any

_LAZY = {"run_grid": "grid.api", "load_model": "grid.model"}

__all__ = ["load_model", "run_grid"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'grid' has no attribute {name!r}")
