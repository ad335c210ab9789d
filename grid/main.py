"""``depth-grid``: one console command for every tool of the project.

Each subcommand is a thin layer over one module's ``main(argv)`` (``depth-grid run`` is
``python -m grid.run``, which keeps working), imported only when it is called, so that
``depth-grid --help`` and a wrong option answer at once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from grid import cli

# subcommand -> (module, argv prefix, one line of help)
COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "run": ("grid.run", (), "run or resume a grid of trials (the main job)"),
    "split": ("grid.split", (), "compute the leakage-free train/validation split of a dataset"),
    "check": ("grid.data", ("check",), "read every item of a dataset and report what is wrong"),
    "synth": ("grid.synth", (), "render synthetic indoor scenes (the built-in default data)"),
    "models": ("grid.models", (), "list the model zoo's architectures and weight sources"),
    "weights": ("grid.weights", (), "fetch or locate the offline ImageNet MobileNetV2 weights"),
    "leaderboard": ("grid.leaderboard", (), "rebuild an experiment's leaderboard from its storage"),
    "predict": ("grid.predict", (), "depth maps (.npy + PNG) for images with a trained model"),
    "submit": ("grid.submit", (), "a competition submission CSV from a trained model"),
    "evaluate": ("grid.evaluate", (), "score a folder of depth predictions against ground truth"),
    "figures": ("grid.figures", (), "comparison panels, leaderboard chart, split clusters"),
    "export": ("grid.export", (), "export a trained model as a Hugging Face folder (from_pretrained)"),
}

USAGE = """usage: depth-grid COMMAND [options]    (depth-grid COMMAND --help for each)

commands:
{commands}

examples:
  depth-grid run --space smoke                       # minutes on a CPU, built-in scenes
  depth-grid run --space all_models --data DIR --format pairs --depth-scale 25.5 --crop eigen
  depth-grid run --space all_models --dry-run        # the trials it would run; starts nothing
  depth-grid predict --experiment results/all_models --input photos/ --out preds/
"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"depth-grid: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, prefix, _ = COMMANDS[name]
    # With a prefix the module's own subcommand names itself: "depth-grid" + "check".
    cli._PROG.append("depth-grid" if prefix else f"depth-grid {name}")
    try:
        return importlib.import_module(module).main([*prefix, *rest])
    finally:
        cli._PROG.pop()


if __name__ == "__main__":
    sys.exit(main())
