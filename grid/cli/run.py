"""``depth-grid run`` (also ``python -m grid.run``): run or resume a grid of trials.

The command only builds a ``RunConfig`` from its options and calls ``grid.experiment.run.run``
(or ``dry_run``); every check lives in the config and the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXAMPLES = """
examples:
  {prog} --space smoke                        # tiny models on the built-in scenes, a minute on a CPU
  {prog} --space cpu_transfer --data ../shared/data/nyu_labeled_train --format pairs --depth-scale 25.5 --crop eigen
  {prog} --space all_models --dry-run         # the trials, data and split it would use; starts nothing
  {prog} --space lambda_lr --arch segformer_b5 --set max_steps_per_epoch=50
  {prog} --space all_models --address auto --storage gs://BUCKET/depth-grid --data ~/data/nyu \\
      --format pairs --depth-scale 25.5 --crop eigen     # on the cluster's head node
"""


def epilog(prog: str) -> str:
    """The spaces table (every space imported, its trials counted) and the examples: built for
    ``--help`` only, not on every call."""
    from grid.experiment.spaces import spaces_table

    return f"search spaces (--space):\n{spaces_table()}\n{EXAMPLES.format(prog=prog)}"


def run(
    space: Annotated[str, typer.Option(help="search space (see below) or a space file (.py) (default: all_models)")] = "all_models",
    plugins: Annotated[list[str] | None, typer.Option("--plugins", metavar="MODULE|FILE", help="import this module or .py file on the driver and in every trial, e.g. to @register_model your own architectures (repeatable)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the trials, data and split the run would use; start nothing")] = False,
    arch: Annotated[list[str] | None, typer.Option("--arch", help="architecture(s) for spaces that take them (repeatable)")] = None,
    data: Annotated[Path | None, typer.Option(help="dataset folder (default: built-in synthetic scenes, CPU profile)")] = None,
    format: Annotated[str | None, typer.Option("--format", metavar="cil|pairs", help="dataset layout (default: detected)")] = None,
    list_file: Annotated[str | None, typer.Option("--list", help="list file inside --data (default per format)")] = None,
    depth_scale: Annotated[float | None, typer.Option(help="PNG depth: metres = value / scale")] = None,
    crop: Annotated[str | None, typer.Option(metavar="eigen|none", help="crop applied to RGB and depth")] = None,
    eval_data: Annotated[list[str] | None, typer.Option("--eval-data", metavar="NAME=DIR[:KEY=VALUE,...]", help="also score every trial's best weights on this set as it ends (repeatable; keys format, list, depth_scale, crop), e.g. tum=/data/tum:format=pairs,depth_scale=5000")] = None,
    prices: Annotated[Path | None, typer.Option(help="price table (JSON or TOML: accelerator -> $ per GPU-hour) replacing grid/experiment/prices.py's")] = None,
    epoch_seconds: Annotated[float | None, typer.Option(help="--dry-run's cost estimate: seconds per epoch (default: measured by an earlier run)")] = None,
    results: Annotated[Path, typer.Option(help="results root (default: results)")] = Path("results"),
    storage: Annotated[str | None, typer.Option(help="Tune storage: absolute path, s3:// or gs:// (default <results>/ray)")] = None,
    name: Annotated[str | None, typer.Option(help="experiment name (default: the space's name)")] = None,
    epochs: Annotated[int | None, typer.Option(help="override the space's epochs")] = None,
    image_size: Annotated[str | None, typer.Option(metavar="HxW", help="override the model input size, e.g. 426x560")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="override a trial setting for every trial, e.g. --set max_steps_per_epoch=50")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(help="GPUs per trial (default: 1 if the cluster has GPUs or its autoscaler can add them, else 0)")] = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs per trial (default: 1)")] = 1.0,
    max_concurrent: Annotated[int | None, typer.Option(help="at most this many trials at once")] = None,
    max_failures: Annotated[int, typer.Option(help="retries of a failed trial from its checkpoint (default: 2)")] = 2,
    retry_errored: Annotated[bool, typer.Option("--retry-errored", help="on resume, re-run errored trials from scratch")] = False,
    address: Annotated[str | None, typer.Option(help="a running Ray cluster (auto, HOST:6379, ray://HOST:10001); default: a new local one")] = None,
    seed: Annotated[int, typer.Option(help="split and search seed (default: 0)")] = 0,
    split: Annotated[str, typer.Option(metavar="sequence|paper|random", help="split rule (default sequence; paper: the paper's cosine > threshold components; random: the naive split)")] = "sequence",
    split_threshold: Annotated[float, typer.Option(help="cosine similarity that links two images (default 0.9, the paper's)")] = 0.9,
    val_fraction: Annotated[float, typer.Option(help="share of images in validation (default: 0.2)")] = 0.2,
    verbose: Annotated[int, typer.Option(help="Tune's output level, 0-3 (default: 1)")] = 1,
) -> int:
    """Run or resume a grid of trials: one Ray Tune trial per architecture / lambda / lr."""
    from grid.cli.context import command_line

    options = dict(locals())
    dry = options.pop("dry_run")
    options["set"] = options.pop("set_")
    options = {k: v for k, v in options.items() if v is not None}
    return execute(options, dry_run=dry, command=command_line())


def execute(options: dict, *, dry_run: bool = False, command: list[str] | None = None) -> int:
    """Build the ``RunConfig`` and run (or preview) it; exit 1 when a trial ended in error."""
    from grid.experiment.config import RunConfig

    cfg = RunConfig(**options, command=tuple(command or ()))
    if dry_run:
        from grid.experiment.dryrun import dry_run as preview
        from grid.experiment.run import validated_plan

        space_mod, plan = validated_plan(cfg)
        print(preview(cfg, space_mod, plan))
        return 0
    from grid.experiment.run import run as run_experiment

    experiment = run_experiment(cfg)
    failed = experiment.saved_leaderboard().query("status == 'error'")
    if len(failed):
        from grid.cli.errors import fail

        return fail(f"{len(failed)} trial(s) ended in error: {', '.join(failed.trial_id)} "
                    f"(see {experiment / 'leaderboard.md'})", code=1)
    return 0
