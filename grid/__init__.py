"""depth-grid's Python API: ``from grid import run_grid, load_model``.

Imported lazily, so that ``import grid`` (and every ``depth-grid`` subcommand) stays light.
"""

from __future__ import annotations

__all__ = ["run_grid"]


def __getattr__(name: str):
    if name == "run_grid":
        from grid.run import run_grid

        return run_grid
    raise AttributeError(f"module 'grid' has no attribute {name!r}")
