"""Options shared by the commands that run a trained model (predict, submit, evaluate,
figures, export): one typed, documented definition each, reused as ``Annotated`` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from grid.cli._types import ImageSize

if TYPE_CHECKING:
    from grid.experiment.record import Experiment

MIN_INPUT = 8  # the smallest model input a trial accepts (trainables.config: image_size, each >= 8)


def _input_size(text: str) -> ImageSize:
    """``--image-size``: ``"426x560"`` -> ``ImageSize(426, 560)``, each side at least ``MIN_INPUT``."""
    from grid.sizes import parse_size

    try:
        return ImageSize(*parse_size(text, minimum=MIN_INPUT))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


Checkpoint = Annotated[Path | None, typer.Option(help="a trial's checkpoint.pt (or its checkpoint folder)")]
ExperimentDir = Annotated[str | None, typer.Option(
    "--experiment", metavar="DIR|URI",
    help="experiment folder (results/NAME), or its record in a bucket (gs://BUCKET/PATH/NAME): its best trial, "
         "its data settings")]
Ensemble = Annotated[int | None, typer.Option(
    min=1, metavar="K", help="with --experiment: average the log-depth of its best K finished trials, each at its "
                      "own input size")]
BatchSize = Annotated[int, typer.Option(min=1, help="images per forward pass")]
InputSize = Annotated[ImageSize | None, typer.Option(
    parser=_input_size, metavar="HxW", help="model input size (default: the checkpoint's training size)")]
Device = Annotated[Literal["cpu", "cuda"] | None, typer.Option(help="default: cuda when available")]
Workers = Annotated[int, typer.Option(min=0, help="image loading processes")]
Tta = Annotated[bool | None, typer.Option(
    "--tta/--no-tta", help="flip test-time averaging (default: as the trial validated, its tta setting)")]
Crop = Annotated[Literal["eigen", "none"] | None, typer.Option(
    help="crop inputs (default: the experiment's for lists in its layout, else none)")]
Format = Annotated[Literal["cil", "pairs"] | None, typer.Option(help="layout of a list file (default: detected)")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="replace existing files depth-grid did not write (never a file the command reads)")]
Plugins = Annotated[list[str] | None, typer.Option(
    "--plugins", metavar="MODULE|FILE",
    help="import this module or .py file first, e.g. the @register_model of a plugin architecture "
         "whose checkpoint this loads (repeatable)")]


def load_plugins(plugins: list[str] | None) -> None:
    """Import ``--plugins`` before any checkpoint is read: their architectures must be registered."""
    if plugins:
        from trainables.plugins import load_plugins as load

        load(plugins)


def source(checkpoint: Path | None, experiment: str | None, ensemble: int | None = None):
    """``(checkpoint path or None, Experiment or None)`` from ``--checkpoint`` / ``--experiment``
    (exactly one; ``--ensemble`` needs ``--experiment``), read before any model loads."""
    if (checkpoint is None) == (experiment is None):
        raise ValueError("give exactly one of --checkpoint FILE or --experiment DIR")
    if ensemble is not None and experiment is None:
        raise ValueError("--ensemble needs --experiment (whose best trials form the ensemble)")
    from grid.experiment.record import Experiment
    from grid.inference.checkpoints import resolve_checkpoint

    exp = Experiment.load(experiment) if experiment is not None else None
    if ensemble is not None:
        exp.top_trials(ensemble)  # enough finished trials, or one line saying how many there are
        return None, exp
    return resolve_checkpoint(checkpoint, exp), exp


def check_trial(experiment: Experiment, trial: str | None) -> None:
    """Refuse a ``--trial`` the experiment's leaderboard has no checkpoint for, before torch and the
    zoo load (``Experiment.trial_row``, the rule ``grid.inference.model.experiment_model`` uses)."""
    if trial is not None:
        experiment.trial_row(trial)
