"""``python -m grid.run --space all_models``: one Ray Tune trial per architecture / lambda / lr.

Assembles the trainable, the search space, Tune and the run config; no training logic here.
The split is computed (or read from its cache) before any trial starts and reaches every trial
through Ray's object store. Re-running the same command resumes an interrupted experiment.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path
from typing import Any

import search_spaces
from grid.cli import parse_size, prog_name
from grid.eval_sets import parse_eval_data
from grid.gpus import cluster_gpus
from grid.plan import SPLIT_METHODS, ExperimentError, check_plan
from search_spaces.profiles import CPU_DEFAULT
from trainables.config import ConfigError, TrialConfig

# Heavy modules (torch, the model zoo, pandas) are imported where they are used, so that a
# wrong setting is reported within seconds, before any of them loads.


def available_spaces() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(search_spaces.__path__) if m.name != "profiles")


SPACE_ATTRS = ("DESCRIPTION", "ARCHS", "SEARCH", "space")


def load_space(name: str):
    """A built-in space by name, or a space file of the same shape (``--space my_space.py``)."""
    if name.endswith(".py"):
        from trainables.plugins import PluginError, import_file

        path = Path(name).expanduser().resolve()
        try:
            module = import_file(path, f"depth_grid_space_{path.stem}")
        except PluginError as e:
            raise ExperimentError(str(e)) from e
        missing = [a for a in SPACE_ATTRS if not hasattr(module, a)]
        if missing:
            raise ExperimentError(f"{path}: a search space file needs {', '.join(SPACE_ATTRS)}; "
                                  f"missing {', '.join(missing)} (see search_spaces/smoke.py)")
        return module
    if name not in available_spaces():
        raise ExperimentError(f"unknown search space {name!r}; valid: {', '.join(available_spaces())} "
                              "or a path to a space file (.py)")
    return importlib.import_module(f"search_spaces.{name}")


def experiment_name(args: argparse.Namespace) -> str:
    return args.name or Path(args.space).stem


def _size(text: str) -> list[int]:
    return list(parse_size(text, minimum=8))

def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not 0 < value < float("inf"):  # also rejects nan
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    return parse


def _setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw  # a plain string


EXAMPLES = """
examples:
  %(prog)s --space smoke                        # tiny models on the built-in scenes, a minute on a CPU
  %(prog)s --space cpu_transfer --data ../shared/data/nyu_labeled_train --format pairs --depth-scale 25.5 --crop eigen
  %(prog)s --space all_models --dry-run         # the trials, data and split it would use; starts nothing
  %(prog)s --space lambda_lr --arch segformer_b5 --set max_steps_per_epoch=50
  %(prog)s --space all_models --address auto --storage gs://BUCKET/depth-grid --data ~/data/nyu \\
      --format pairs --depth-scale 25.5 --crop eigen     # on the cluster's head node
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and appends each option's default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if "default" not in help_ and action.default not in (None, False, [], argparse.SUPPRESS):
            help_ += " (default: %(default)s)"
        return help_


class _Parser(argparse.ArgumentParser):
    """Builds the spaces table (every space imported, its trials counted) only for ``--help``,
    not on every parse."""

    def format_help(self) -> str:
        from grid.dryrun import spaces_table

        self.epilog = f"search spaces (--space):\n{spaces_table()}\n{EXAMPLES}"
        return super().format_help()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog=prog_name("python -m grid.run"), description=__doc__.splitlines()[0], allow_abbrev=False,
                formatter_class=_HelpFormatter)
    p.add_argument("--space", default="all_models", help="search space (see below) or a space file (.py)")
    p.add_argument("--plugins", action="append", default=[], metavar="MODULE|FILE",
                   help="import this module or .py file on the driver and in every trial, e.g. to "
                        "@register_model your own architectures (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the trials, data and split the run would use; start nothing")
    p.add_argument("--arch", action="append", help="architecture(s) for spaces that take them (repeatable)")
    p.add_argument("--data", type=Path, help="dataset folder (default: built-in synthetic scenes, CPU profile)")
    p.add_argument("--format", choices=["cil", "pairs"], help="dataset layout (default: detected)")
    p.add_argument("--list", dest="list_file", help="list file inside --data (default per format)")
    p.add_argument("--depth-scale", type=_positive(float), help="PNG depth: metres = value / scale")
    p.add_argument("--crop", choices=["eigen", "none"], help="crop applied to RGB and depth")
    p.add_argument("--eval-data", type=parse_eval_data, action="append", default=[], metavar="NAME=DIR[:KEY=VALUE,...]",
                   help="also score every trial's best weights on this set as it ends (repeatable; keys format, "
                        "list, depth_scale, crop), e.g. tum=/data/tum:format=pairs,depth_scale=5000")
    p.add_argument("--prices", type=Path, help="price table (JSON or TOML: accelerator -> $ per GPU-hour) "
                                               "replacing grid/prices.py's")
    p.add_argument("--epoch-seconds", type=_positive(float), help="--dry-run's cost estimate: seconds per epoch "
                                                                  "(default: measured by an earlier run)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root")
    p.add_argument("--storage", help="Tune storage: absolute path, s3:// or gs:// (default <results>/ray)")
    p.add_argument("--name", help="experiment name (default: the space's name)")
    p.add_argument("--epochs", type=_positive(int), help="override the space's epochs")
    p.add_argument("--image-size", type=_size, help="override the model input size, e.g. 426x560")
    p.add_argument("--set", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="override a trial setting for every trial, e.g. --set max_steps_per_epoch=50")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (default: 1 if the cluster has GPUs or its autoscaler "
                        "can add them, else 0)")
    p.add_argument("--cpus-per-trial", type=_positive(float), default=1.0, help="CPUs per trial")
    p.add_argument("--max-concurrent", type=_positive(int), help="at most this many trials at once")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its checkpoint")
    p.add_argument("--retry-errored", action="store_true", help="on resume, re-run errored trials from scratch")
    p.add_argument("--address", help="a running Ray cluster (auto, HOST:6379, ray://HOST:10001); default: a new local one")
    p.add_argument("--seed", type=int, default=0, help="split and search seed")
    p.add_argument("--split", choices=SPLIT_METHODS, default="sequence",
                   help="split rule (default sequence; paper: the paper's cosine > threshold "
                        "components; random: the naive split)")
    p.add_argument("--split-threshold", type=float, default=0.9,
                   help="cosine similarity that links two images (default 0.9, the paper's)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of images in validation")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2, 3], help="Tune's output level")
    args = p.parse_args(argv)
    args.command = [p.prog, *(sys.argv[1:] if argv is None else argv)]  # provenance
    if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
        p.error("--gpus-per-trial must be >= 0")
    if not 0 < args.val_fraction < 1:
        p.error("--val-fraction must be between 0 and 1")
    if not 0 < args.split_threshold <= 1:
        p.error("--split-threshold must be in (0, 1]")
    return args


def studies(space_mod, args: argparse.Namespace, synthetic: bool) -> list[tuple[str, dict[str, Any]]]:
    """(Tune experiment name, param space) pairs: one, or one per architecture (Optuna)."""
    name = experiment_name(args)
    overrides: dict[str, Any] = dict(CPU_DEFAULT) if synthetic else {}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.image_size:
        overrides["image_size"] = args.image_size
    overrides.update(dict(args.set))
    archs = args.arch or space_mod.ARCHS
    if space_mod.SEARCH.get("per_arch"):
        plan = [(f"{name}-{a}", {**space_mod.space([a]), **overrides}) for a in archs]
    else:
        plan = [(name, {**space_mod.space(archs), **overrides})]
    valid = {f.name for f in dataclasses.fields(TrialConfig)}
    for _, param_space in plan:
        unknown = sorted(set(param_space) - valid)
        if unknown:
            raise ExperimentError(f"search space {args.space!r} (or --set) has unknown key(s) {unknown}; "
                                  f"valid trial settings: {', '.join(sorted(valid))}")
    return plan


def stable(obj: Any) -> Any:
    """A JSON-able description of a param space that is the same in every run (no addresses)."""
    if isinstance(obj, dict):
        return {str(k): stable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [stable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    func = getattr(obj, "func", None)
    if callable(func):
        return f"sample_from:{func.__module__}.{func.__qualname__}"
    return {"type": type(obj).__name__, **{k: stable(v) for k, v in sorted(vars(obj).items()) if not k.startswith("_")}}


def check_writable(folder: Path) -> None:
    """Fail before any work when results cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ExperimentError(f"{folder}: cannot write results there ({e.strerror or e})") from e


def validated_plan(args: argparse.Namespace):
    """The space and its plan, every name, key and value a trial can get checked (no Ray yet).
    Plugins are imported first: their architectures must be known to the check."""
    from trainables.plugins import PluginError, load_plugins

    try:
        load_plugins(args.plugins)
    except PluginError as e:
        raise ExperimentError(str(e)) from e
    space_mod = load_space(args.space)
    plan = studies(space_mod, args, synthetic=args.data is None)
    check_plan(plan)
    return space_mod, plan


def run(args: argparse.Namespace) -> Path:
    """Run (or resume) the experiment; returns its results folder with the leaderboard."""
    space_mod, plan = validated_plan(args)  # before any work (split, Ray) starts
    from grid.cost import read_prices
    from grid.eval_sets import eval_record, resolve_eval_sets

    eval_sets, prices = resolve_eval_sets(args.eval_data), read_prices(args.prices)  # ditto
    results = args.results.expanduser().resolve()
    import ray
    from ray import tune

    from grid.experiment import prepare_bundle, record_experiment, resolve_data, spec_record
    from grid.leaderboard import build_leaderboard, format_table, write_leaderboard
    from grid.tuner import make_tuner

    # Tune's legacy output takes grid.tuner's compact trial table; its new one prints a
    # configuration box per trial and ignores reporters.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from trainables.plugins import resolved, runtime_env_modules
    from trainables.provenance import provenance
    from trainables.trainable import train_depth

    started_here = not ray.is_initialized()
    if started_here:
        # "local" always starts a fresh local instance, never joining a cluster by accident.
        local = args.address in (None, "local")
        # The synthetic profile uses pretrained weights only if they are already on this
        # machine: look them up offline instead of waiting on hub retries with no network.
        env = {"HF_HUB_OFFLINE": "1"} if args.data is None and local else {}
        runtime_env = {"env_vars": env, "py_modules": runtime_env_modules(args.plugins)}  # plugins reach workers
        ray.init(address=args.address or "local", include_dashboard=False if local else None,
                 configure_logging=False, runtime_env={k: v for k, v in runtime_env.items() if v} or None)
    try:
        gpu_plan = cluster_gpus(args.gpus_per_trial)  # refuses GPUs no node can have: nothing written
        gpus = gpu_plan.gpus_per_trial
        print(f"GPUs per trial: {gpus:g} ({gpu_plan.reason})")
        storage = args.storage or str(results / "ray")
        if "://" not in storage:
            storage = str(Path(storage).expanduser().resolve())
            check_writable(Path(storage))
        check_writable(results)
        spec, synthetic = resolve_data(args.data, results, format=args.format, list_file=args.list_file,
                                       depth_scale=args.depth_scale, crop=args.crop)
        bundle, split = prepare_bundle(spec, results, seed=args.seed, val_fraction=args.val_fraction,
                                       method=args.split, threshold=args.split_threshold)
        print(f"Split ({args.split}): {len(bundle.train)} train / {len(bundle.val)} val images "
              f"({bundle.split_id})")
        experiment_dir = results / experiment_name(args)
        prov = provenance(args.command)
        plugin_specs = resolved(args.plugins)
        signature = {"space": args.space, "studies": [[n, stable(s)] for n, s in plan],
                     "data": spec_record(spec), "split": bundle.split_id, "storage": storage}
        if eval_sets:  # only then: experiments recorded before --eval-data existed still resume
            signature["eval_data"] = eval_record(eval_sets)
        record_experiment(experiment_dir, {  # refuses a resume with other settings: nothing written
            "name": experiment_dir.name, "space": args.space, "storage": storage, "signature": signature,
            "data": spec_record(spec), "split": str(experiment_dir / "split.json"), "synthetic": synthetic,
            "split_method": args.split, "split_threshold": args.split_threshold,
            "image_size": plan[0][1].get("image_size", [426, 560]), "gpus_per_trial": gpus,
            "gpu_rule": gpu_plan.reason, "tune_dirs": [f"{storage}/{n}" for n, _ in plan],
            "provenance": prov, **({"prices": prices} if args.prices else {}),
        })
        split.to_json(experiment_dir / "split.json")
        trainable = tune.with_parameters(train_depth, data=bundle, provenance=prov, plugins=plugin_specs,
                                         eval_sets=eval_sets)
        for tune_name, param_space in plan:
            make_tuner(trainable, tune_name, param_space, space_mod.SEARCH, args, storage, gpus).fit()
    finally:
        if started_here:
            ray.shutdown()
    df = build_leaderboard(experiment_dir)
    write_leaderboard(df, experiment_dir)
    print("\n" + format_table(df) + f"\n\nLeaderboard: {experiment_dir / 'leaderboard.csv'}")
    from grid.cost import cost_line

    print(cost_line(df))
    return experiment_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from grid.leaderboard import read_leaderboard
    from trainables.data import DataError

    try:
        if args.dry_run:
            from grid.dryrun import dry_run

            space_mod, plan = validated_plan(args)
            print(dry_run(args, plan, space_mod.SEARCH))
            return 0
        experiment_dir = run(args)
    except (ExperimentError, DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = read_leaderboard(experiment_dir).query("status == 'error'")
    if len(failed):
        print(f"error: {len(failed)} trial(s) ended in error: {', '.join(failed.trial_id)} "
              f"(see {experiment_dir / 'leaderboard.md'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
