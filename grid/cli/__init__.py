"""``depth-grid``: one console command for every tool of the project, on typer.

``app.py`` registers one command per module of this package; each module is one typed,
documented function over one public library function, which it imports inside its body, so
that ``depth-grid --help`` and a wrong option answer at once (no torch, no Ray). ``errors.py`` is
the one map from known exceptions to one line and an exit code (0 done, 1 failed, 2 bad input).
``python -m grid.run`` keeps working: it is ``depth-grid run``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

# command -> one line of help (the listing of depth-grid --help, in this order)
COMMANDS: dict[str, str] = {
    "run": "run or resume a grid of trials (the main job)",
    "split": "compute the leakage-free train/validation split of a dataset",
    "check": "read every item of a dataset and report what is wrong",
    "pack": "pack a dataset into tar shards + manifest, in a folder or a bucket",
    "synth": "render synthetic indoor scenes (the built-in default data)",
    "models": "list the model zoo's architectures and weight sources",
    "weights": "fetch or locate the offline ImageNet MobileNetV2 weights",
    "leaderboard": "rebuild an experiment's leaderboard from its storage",
    "predict": "depth maps (.npy + PNG) for images with a trained model",
    "submit": "a competition submission CSV from a trained model",
    "evaluate": "score a folder of depth predictions against ground truth",
    "figures": "comparison panels, leaderboard chart, split clusters",
    "export": "export a trained model as a Hugging Face folder (from_pretrained)",
}


def command(name: str) -> Callable[[Sequence[str]], int]:
    """``depth-grid NAME`` as a function of its arguments (``command("predict")(["--help"])``), for
    scripts and tests; the same parsing, checks and error map as the console command."""
    if name not in COMMANDS:
        raise KeyError(f"unknown command {name!r}; valid: {', '.join(COMMANDS)}")
    return lambda argv=(): main([name, *argv])


def main(argv: Sequence[str] | None = None) -> int:
    """``depth-grid ARGV`` (default: ``sys.argv[1:]``); returns the exit code.

    A known error (``grid.cli.errors``) prints one line and returns its code (2: bad input).
    As with argparse, ``depth-grid CMD --help`` and a usage error of a command exit through
    ``SystemExit`` (0 and 2); an unknown or missing command returns 2.
    """
    import typer

    from grid.cli.app import app
    from grid.cli.context import PROG, running
    from grid.cli.errors import report

    args = list(sys.argv[1:] if argv is None else argv)
    with running(args):
        try:
            return typer.main.get_command(app).main(args, prog_name=PROG, standalone_mode=False) or 0
        except Exception as error:
            code = report(error)
            if code is None:
                raise
            return code
