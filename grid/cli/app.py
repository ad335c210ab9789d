"""The ``depth-grid`` typer app: registers one command per module of ``grid.cli``, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import typer

from grid.cli import (
    COMMANDS,
    check,
    evaluate,
    export,
    figures,
    leaderboard,
    models,
    pack,
    predict,
    run,
    split,
    submit,
    synth,
    weights,
)
from grid.cli._framework import Command, Group

EPILOG = """\b
examples:
  depth-grid run --space smoke                       # minutes on a CPU, built-in scenes
  depth-grid run --space all_models --data DIR --format pairs --depth-scale 25.5 --crop eigen
  depth-grid run --space all_models --dry-run        # the trials it would run; starts nothing
  depth-grid predict --experiment results/all_models --input photos/ --out preds/
"""

SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

HELP = """A Ray Tune experiment grid for monocular depth estimation.

Exit codes: 0 done, 1 failed (a trial in error, a bad dataset item), 2 bad input."""

app = typer.Typer(
    name="depth-grid", cls=Group, help=HELP,
    epilog=EPILOG, rich_markup_mode=None, pretty_exceptions_enable=False, no_args_is_help=True,
    add_completion=False, context_settings=SETTINGS)


def _register(name: str, function: Callable[..., object]) -> None:
    app.command(name, cls=Command, short_help=COMMANDS[name])(function)


weights_app = typer.Typer(cls=Group, help=COMMANDS["weights"], rich_markup_mode=None, add_completion=False)
weights_app.command("fetch", cls=Command)(weights.fetch)
weights_app.command("path", cls=Command)(weights.path)

app.command("run", cls=Command, short_help=COMMANDS["run"], epilog=run.epilog)(run.run)
_register("split", split.split)
_register("check", check.check)
_register("pack", pack.pack)
_register("synth", synth.synth)
_register("models", models.models)
app.add_typer(weights_app, name="weights", short_help=COMMANDS["weights"])
_register("leaderboard", leaderboard.leaderboard)
_register("predict", predict.predict)
_register("submit", submit.submit)
_register("evaluate", evaluate.evaluate)
_register("figures", figures.figures)
_register("export", export.export)
