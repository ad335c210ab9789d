"""Driver side of depth-grid: runs grids, reads their experiments, predicts with their models.

The Python API, loaded on first use so that ``import grid`` (and every ``depth-grid`` command)
stays light:

    from grid import RunConfig, run_grid, Experiment, load_model
    from grid.experiment.run import run

- ``run(RunConfig(...)) -> Experiment`` and ``run_grid(space, data, **options)``
  (``grid.experiment.run``; ``grid.run`` is the module behind ``python -m grid.run``, so the
  function is not exported under that name here);
- ``Experiment.load(folder)``: an experiment's record, split, leaderboard and checkpoints
  (``grid.experiment.record``);
- ``load_model(path)``: a trained model ready for inference (``grid.inference.model``).
"""

from typing import Any

_LAZY = {
    "RunConfig": "grid.experiment.config",
    "run_grid": "grid.experiment.run",
    "Experiment": "grid.experiment.record",
    "load_model": "grid.inference.model",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'grid' has no attribute {name!r}")
