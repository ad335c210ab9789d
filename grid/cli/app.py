"""The ``depth-grid`` typer app: registers one command per module of ``grid.cli``, nothing else."""

from __future__ import annotations

import importlib

import typer

from grid.cli import COMMANDS, check, models, split, synth, weights
from grid.cli._framework import Command, Group

EPILOG = """\b
examples:
  depth-grid run --space smoke                       # minutes on a CPU, built-in scenes
  depth-grid run --space all_models --data DIR --format pairs --depth-scale 25.5 --crop eigen
  depth-grid run --space all_models --dry-run        # the trials it would run; starts nothing
  depth-grid predict --experiment results/all_models --input photos/ --out preds/
"""

SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

app = typer.Typer(
    name="depth-grid", cls=Group, help="A Ray Tune experiment grid for monocular depth estimation.",
    epilog=EPILOG, rich_markup_mode=None, pretty_exceptions_enable=False, no_args_is_help=True,
    add_completion=False, context_settings=SETTINGS)


def _register(name: str, function) -> None:
    app.command(name, cls=Command, short_help=COMMANDS[name])(function)


# ---- TEMPORARY (issue 20): commands still on argparse ------------------------------------------
# Each is passed through to its module's main(argv) until it has a grid/cli/<command>.py; then
# delete its row here and turn its _bridge("name") below into _register("name", module.function).
# With the table empty, delete this block and grid.sizes._PROG.
ARGPARSE_COMMANDS = {
    "run": "grid.experiment.run",
    "leaderboard": "grid.experiment.leaderboard",
    "predict": "grid.inference.predict",
    "submit": "grid.inference.submit",
    "evaluate": "grid.inference.evaluate",
    "figures": "grid.figures",
    "export": "grid.inference.export",
}
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _bridge(name: str) -> None:
    def command(ctx: typer.Context) -> int:
        from grid import sizes

        sizes._PROG.append(f"depth-grid {name}")  # the module's argparse prog, and its provenance
        try:
            return importlib.import_module(ARGPARSE_COMMANDS[name]).main(list(ctx.args))
        finally:
            sizes._PROG.pop()

    app.command(name, cls=Command, help=COMMANDS[name], short_help=COMMANDS[name],
                context_settings=PASS_THROUGH, add_help_option=False)(command)
# ---- end of TEMPORARY --------------------------------------------------------------------------


weights_app = typer.Typer(cls=Group, help=COMMANDS["weights"], rich_markup_mode=None, add_completion=False)
weights_app.command("fetch", cls=Command)(weights.fetch)
weights_app.command("path", cls=Command)(weights.path)

_bridge("run")
_register("split", split.split)
_register("check", check.check)
_register("synth", synth.synth)
_register("models", models.models)
app.add_typer(weights_app, name="weights", short_help=COMMANDS["weights"])
_bridge("leaderboard")
_bridge("predict")
_bridge("submit")
_bridge("evaluate")
_bridge("figures")
_bridge("export")
