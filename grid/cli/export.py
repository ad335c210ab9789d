"""``depth-grid export``: a trained model as a Hugging Face model folder (``grid.inference.export.export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grid.cli import _options as o


def export(
    experiment: Annotated[str, typer.Option(metavar="DIR|URI", help="results/<experiment> folder, or its record in a bucket (gs://BUCKET/PATH/NAME)")],
    out: Annotated[Path, typer.Option(help="folder to write (new, empty or an earlier export)")],
    trial: Annotated[str | None, typer.Option(help="a trial_id from the leaderboard (default: the best trial)")] = None,
    push_to_hub: Annotated[str | None, typer.Option(
        metavar="REPO", help="also upload to this Hub repo (needs network and a token)")] = None,
    plugins: o.Plugins = None,
) -> None:
    """Export a trained model as a Hugging Face folder: config.json, model.safetensors, README.md.

    It loads with grid.load_model(FOLDER) or DepthGridModel.from_pretrained(FOLDER), no
    architecture named by hand, and its model card says what trained it. --out is a new, empty
    or earlier export folder, never the experiment folder or a checkpoint folder.

    \b
    examples:
      depth-grid export --experiment results/smoke --out exported/smoke
      depth-grid export --experiment results/smoke --trial 5c1e2_00001 --out exported/unet
      depth-grid export --experiment results/smoke --out exported/smoke --push-to-hub me/depth-smoke
    """
    from grid.cli.context import command_line
    from grid.experiment.record import Experiment
    from grid.inference.export import export as write

    exp = Experiment.load(experiment)
    o.check_trial(exp, trial)  # before torch loads (the export checks --out before it loads a model)

    o.load_plugins(plugins)
    folder = write(exp, out, trial=trial, push_to_hub=push_to_hub, command=[*command_line()[0].split(), *command_line()[1:]])
    print(f"load it with grid.load_model({str(folder)!r}) or DepthGridModel.from_pretrained({str(folder)!r})")
