"""The Python API of ``grid.run``: ``run_grid(space, data, **options)``, every keyword a
``depth-grid run`` option, parsed and validated exactly as the command line is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grid.run import parse_args, run


def settings_argv(space: str, data: str | Path | None, settings: dict[str, Any]) -> list[str]:
    """``run_grid``'s keyword arguments as ``grid.run`` options: ``epochs=3`` -> ``--epochs 3``,
    ``retry_errored=True`` -> ``--retry-errored``, ``arch=[..]`` / ``plugins=[..]`` repeat the option,
    ``set={"lr": 1e-3}`` -> ``--set lr=0.001`` (JSON values)."""
    argv = ["--space", str(space)] + (["--data", str(data)] if data is not None else [])
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if key == "set":
            argv += [a for k, v in dict(value).items() for a in ("--set", f"{k}={json.dumps(v)}")]
        elif value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)) and key in ("arch", "plugins"):
            argv += [a for v in value for a in (flag, str(v))]
        elif isinstance(value, (list, tuple)):  # image_size=(426, 560)
            argv += [flag, "x".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def run_grid(space: str = "all_models", data: str | Path | None = None, **settings: Any):
    """Run (or resume) a grid from Python; returns ``(leaderboard DataFrame, experiment folder)``.

    Every keyword is a ``grid.run`` option (see ``depth-grid run --help``), validated the same way.

    Example:
        >>> board, folder = run_grid("smoke", data="scenes/", results="/tmp/results", set={"epochs": 2})
        >>> board[["arch", "si_rmse", "status"]]
    """
    from grid.leaderboard import read_leaderboard

    if settings.get("dry_run"):
        raise ValueError("run_grid runs the grid; preview it with `depth-grid run --dry-run ...`")
    args = parse_args(settings_argv(space, data, settings))
    experiment_dir = run(args)
    return read_leaderboard(experiment_dir), experiment_dir
