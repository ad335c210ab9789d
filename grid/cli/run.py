"""``depth-grid run`` (also ``python -m grid.run``): run or resume a grid of trials.

The command only builds a ``RunConfig`` from its options and calls ``grid.experiment.run.run``
(or ``dry_run``); every check lives in the config and the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from grid.cli.context import command_line
from grid.cli.errors import BAD_INPUT, INTERRUPTED, fail

if TYPE_CHECKING:
    from grid.experiment.config import RunConfig

EXAMPLES = """
examples:
  {prog} --space smoke                        # tiny models on the built-in scenes, a minute on a CPU
  {prog} --space cpu_transfer --data ../shared/data/nyu_labeled_train --format pairs --depth-scale 25.5 --crop eigen
  {prog} --space all_models --dry-run         # the trials, data and split it would use; starts nothing
  {prog} --space lambda_lr --arch segformer_b5 --set max_steps_per_epoch=50
  {prog} --space smoke --seeds 3 --log-to mlflow --tracking-uri http://127.0.0.1:5000   # 3 seeds per point, tracked
  {prog} --space all_models --address auto --storage gs://BUCKET/depth-grid --data ~/data/nyu \\
      --format pairs --depth-scale 25.5 --crop eigen     # on the cluster's head node
"""


def epilog(prog: str) -> str:
    """The spaces table (every space imported, its trials counted) and the examples: built for
    ``--help`` only, not on every call."""
    from grid.experiment.spaces import spaces_table

    return f"search spaces (--space):\n{spaces_table()}\n{EXAMPLES.format(prog=prog)}"


def _opt(*names: str, help: str, **kw) -> typer.models.OptionInfo:
    # Each help text states its default itself, as argparse printed it: "(default: results)".
    return typer.Option(*names, help=help, show_default=False, **kw)


def run(
    space: Annotated[str, _opt(metavar="NAME|FILE", help="search space (see below) or a space file (.py) (default: all_models)")] = "all_models",
    plugins: Annotated[list[str] | None, _opt("--plugins", metavar="MODULE|FILE", help="import this module or .py file on the driver and in every trial, e.g. to @register_model your own architectures (repeatable)")] = None,
    dry_run: Annotated[bool, _opt("--dry-run", help="print the trials, data and split the run would use; start nothing")] = False,
    arch: Annotated[list[str] | None, _opt("--arch", metavar="NAME", help="architecture(s) for spaces that take them (repeatable)")] = None,
    data: Annotated[str | None, _opt(metavar="DIR|URI", help="dataset folder, or a pack (depth-grid pack): its folder or s3://, gs:// URI (default: built-in synthetic scenes, CPU profile)")] = None,
    format: Annotated[Literal["cil", "pairs", "kitti"] | None, _opt(help="dataset layout (default: detected)")] = None,
    list_file: Annotated[str | None, _opt("--list", metavar="FILE", help="list file inside --data (default per format)")] = None,
    depth_scale: Annotated[float | None, _opt(help="PNG depth: metres = value / scale")] = None,
    crop: Annotated[Literal["eigen", "none"] | None, _opt(help="crop applied to RGB and depth")] = None,
    protocol: Annotated[str | None, _opt(metavar="none|nyu|kitti_eigen|kitti_garg", help="validation's evaluation protocol: crop and depth cap as the papers score (docs/metrics.md; default: none)")] = None,
    align: Annotated[str | None, _opt(metavar="none|median|lstsq", help="validation's per-image alignment for relative-depth models (lstsq: in the model's native space, --set align_space=... to choose; default: none)")] = None,
    eval_data: Annotated[list[str] | None, _opt("--eval-data", metavar="NAME=DIR[:KEY=VALUE,...]", help="also score every trial's best weights on this set as it ends (repeatable; keys format, list, depth_scale, crop, protocol), e.g. tum=/data/tum:format=pairs,depth_scale=5000")] = None,
    prices: Annotated[Path | None, _opt(metavar="FILE", help="price table (JSON or TOML: accelerator -> $ per GPU-hour) replacing grid/experiment/prices.py's")] = None,
    epoch_seconds: Annotated[float | None, _opt(help="--dry-run's cost estimate: seconds per epoch (default: measured by an earlier run)")] = None,
    results: Annotated[Path, _opt(metavar="DIR", help="results root (default: results)")] = Path("results"),
    cache_dir: Annotated[Path | None, _opt(metavar="DIR", help="with a packed --data: the node-local cache of its shards (packs/), beside its split and embeddings (default: <results>/splits); $DEPTH_GRID_CACHE_DIR on a node overrides it there")] = None,
    storage: Annotated[str | None, _opt(metavar="PATH|URI", help="Tune storage: absolute path, s3:// or gs:// (default <results>/ray)")] = None,
    name: Annotated[str | None, _opt(help="experiment name (default: the space's name)")] = None,
    epochs: Annotated[int | None, _opt(help="override the space's epochs")] = None,
    image_size: Annotated[str | None, _opt(metavar="HxW", help="override the model input size, e.g. 426x560")] = None,
    set_: Annotated[list[str] | None, _opt("--set", metavar="KEY=VALUE", help="override a trial setting for every trial, e.g. --set max_steps_per_epoch=50")] = None,
    gpus_per_trial: Annotated[float | None, _opt(help="GPUs per trial (default: 1 if the cluster has GPUs or its autoscaler can add them, else 0)")] = None,
    accelerator: Annotated[str | None, _opt(metavar="TYPE", help="GPU type trials ask for: T4, P100... (Ray's accelerator_type resource), or any (default: the cheapest type the cluster has or can add)")] = None,
    cpus_per_trial: Annotated[float | None, _opt(help="CPUs per trial (default: 1 on CPU; with GPUs, the GPU nodes' CPUs per GPU, e.g. 4 on cluster.yaml's T4 nodes)")] = None,
    max_concurrent: Annotated[int | None, _opt(help="at most this many trials at once")] = None,
    max_failures: Annotated[int, _opt(help="retries of a trial whose code failed, from its checkpoint (default: 2); preemptions (SIGTERM, a lost node) are retried apart, up to 20")] = 2,
    retry_errored: Annotated[bool, _opt("--retry-errored", help="on resume, re-run errored trials from scratch")] = False,
    address: Annotated[str | None, _opt(metavar="ADDRESS", help="a running Ray cluster (auto, HOST:6379, ray://HOST:10001); default: a new local one")] = None,
    seed: Annotated[int, _opt(help="split and search seed (default: 0)")] = 0,
    seeds: Annotated[str | None, _opt(metavar="K|S1,S2,...", help="run every grid point at K trial seeds (--seed, --seed+1, ...) or at the listed ones; the leaderboard groups them: mean, std and a bootstrap interval against the best (default: 1, the space's seed)")] = None,
    split: Annotated[Literal["sequence", "paper", "random"], _opt(help="split rule (default sequence; paper: the paper's cosine > threshold components; random: the naive split)")] = "sequence",
    split_threshold: Annotated[float, _opt(help="cosine similarity that links two images (default 0.9, the paper's)")] = 0.9,
    val_fraction: Annotated[float, _opt(help="share of images in validation (default: 0.2)")] = 0.2,
    verbose: Annotated[int, _opt(help="Tune's output level, 0-3 (default: 1)")] = 1,
    log_to: Annotated[list[str] | None, _opt("--log-to", metavar="tensorboard|mlflow|wandb", help="also log params, per-epoch metrics and the best checkpoint to MLflow or Weights & Biases through Tune's callbacks (repeatable or comma list; TensorBoard event files are always written)")] = None,
    tracking_uri: Annotated[str | None, _opt(metavar="URI", help="--log-to mlflow's tracking server, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI)")] = None,
) -> None:
    """Run or resume a grid of trials: one Ray Tune trial per architecture / lambda / lr.

    Every check that needs no Ray (settings, data, folders, weights, resources, a --name that
    holds other settings) runs first, within seconds. The split is computed (or read from its
    cache) before any trial starts and reaches every trial through Ray's object store.
    Re-running the same command resumes an interrupted experiment. Exit code 1 when a trial
    ended in error, 130 when Ctrl-C stopped the run (the leaderboard names the trials).
    """
    cfg, dry = config(dict(locals()))
    if dry:
        from grid.experiment.dryrun import dry_run as preview
        from grid.experiment.preflight import preflight

        checked = preflight(cfg, dry_run=True)  # what the run would refuse, --dry-run refuses too
        print(preview(cfg, checked.space_mod, checked.plan))
        return
    from grid.experiment.run import run as run_experiment

    experiment = run_experiment(cfg)
    board = experiment.saved_leaderboard()
    stopped = board.query("status == 'interrupted'")
    if len(stopped):
        raise typer.Exit(fail(f"interrupted: {len(stopped)} trial(s) did not finish: {', '.join(stopped.trial_id)}; "
                              f"run the same command to resume them (see {experiment / 'leaderboard.md'})",
                              INTERRUPTED))
    failed = board.query("status == 'error'")
    if len(failed):
        raise typer.Exit(fail(f"{len(failed)} trial(s) ended in error: {', '.join(failed.trial_id)} "
                              f"(see {experiment / 'leaderboard.md'})"))


def config(params: dict) -> tuple[RunConfig, bool]:
    """The ``RunConfig`` of parsed options (and whether ``--dry-run`` was given)."""
    from grid.experiment.config import RunConfig

    params = dict(params)
    dry = params.pop("dry_run", False)
    params["set"] = params.pop("set_", None)
    options = {k: v for k, v in params.items() if v is not None}
    return RunConfig(**options, command=tuple(command_line())), dry


def parse_args(argv: list[str]) -> RunConfig:
    """``depth-grid run ARGV``'s ``RunConfig``, nothing run: a bad option or value prints one
    line and raises ``SystemExit(2)``, as the command does (used to check documented commands)."""
    from grid.cli._framework import Command
    from grid.cli.errors import report

    single = typer.Typer(rich_markup_mode=None, add_completion=False)
    single.command(cls=Command)(run)
    command = typer.main.get_command(single)
    try:
        ctx = command.make_context("depth-grid run", list(argv))
        return config(ctx.params)[0]
    except Exception as error:
        code = report(error)
        if code is None:
            raise
        raise SystemExit(BAD_INPUT) from None
