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
import pkgutil
import sys
from pathlib import Path
from typing import Any

import search_spaces
from grid.cli import parse_size
from grid.gpus import cluster_gpus
from grid.plan import SPLIT_METHODS, ExperimentError, check_plan
from search_spaces.profiles import CPU_DEFAULT
from trainables.config import ConfigError, TrialConfig

# Heavy modules (torch, the model zoo, pandas) are imported where they are used, so that a
# wrong setting is reported within seconds, before any of them loads.


def available_spaces() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(search_spaces.__path__) if m.name != "profiles")


def load_space(name: str):
    if name not in available_spaces():
        raise ExperimentError(f"unknown search space {name!r}; valid: {', '.join(available_spaces())}")
    return importlib.import_module(f"search_spaces.{name}")


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m grid.run", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--space", default="all_models", help=f"search space: {', '.join(available_spaces())}")
    p.add_argument("--arch", action="append", help="architecture(s) for spaces that take them (repeatable)")
    p.add_argument("--data", type=Path, help="dataset folder (default: built-in synthetic scenes, CPU profile)")
    p.add_argument("--format", choices=["cil", "pairs"], help="dataset layout (default: detected)")
    p.add_argument("--list", dest="list_file", help="list file inside --data (default per format)")
    p.add_argument("--depth-scale", type=_positive(float), help="PNG depth: metres = value / scale")
    p.add_argument("--crop", choices=["eigen", "none"], help="crop applied to RGB and depth")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root (default ./results)")
    p.add_argument("--storage", help="Tune storage: absolute path, s3:// or gs:// (default <results>/ray)")
    p.add_argument("--name", help="experiment name (default: the space's name)")
    p.add_argument("--epochs", type=_positive(int), help="override the space's epochs")
    p.add_argument("--image-size", type=_size, help="override the model input size, e.g. 426x560")
    p.add_argument("--set", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="override a trial setting for every trial, e.g. --set max_steps_per_epoch=50")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (default: 1 if the cluster has GPUs or its autoscaler "
                        "can add them, else 0)")
    p.add_argument("--cpus-per-trial", type=_positive(float), default=1.0)
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
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2, 3], help="Tune's output level")
    args = p.parse_args(argv)
    if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
        p.error("--gpus-per-trial must be >= 0")
    if not 0 < args.val_fraction < 1:
        p.error("--val-fraction must be between 0 and 1")
    if not 0 < args.split_threshold <= 1:
        p.error("--split-threshold must be in (0, 1]")
    return args


def studies(space_mod, args: argparse.Namespace, synthetic: bool) -> list[tuple[str, dict[str, Any]]]:
    """(Tune experiment name, param space) pairs: one, or one per architecture (Optuna)."""
    name = args.name or args.space
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


def make_tuner(trainable, tune_name: str, param_space: dict, search: dict, args, storage: str, gpus: float):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    trainable = tune.with_resources(trainable, {"cpu": args.cpus_per_trial, "gpu": gpus})
    path = f"{storage.rstrip('/')}/{tune_name}"
    if tune.Tuner.can_restore(path):
        print(f"Resuming experiment {path} (finished trials are kept, not re-run)")
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=False,
                                  restart_errored=args.retry_errored, param_space=param_space)
    if search["algorithm"] == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        algo = ConcurrencyLimiter(OptunaSearch(seed=search["seed"]), max_concurrent=args.max_concurrent or 2)
    else:
        algo = BasicVariantGenerator(random_state=search["seed"])
    scheduler = None
    if search.get("scheduler") == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", max_t=int(param_space["epochs"]),
                                  grace_period=search.get("grace_period", 1),
                                  reduction_factor=search.get("reduction_factor", 2))
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="si_rmse", mode="min", num_samples=search["num_samples"],
                                    search_alg=algo, scheduler=scheduler,
                                    max_concurrent_trials=args.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=tune_name, storage_path=storage, verbose=args.verbose,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="si_rmse",
                                                    checkpoint_score_order="min"),
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            sync_config=tune.SyncConfig(sync_artifacts=True),  # TensorBoard events reach remote storage
        ),
    )


def run(args: argparse.Namespace) -> Path:
    """Run (or resume) the experiment; returns its results folder with the leaderboard."""
    space_mod = load_space(args.space)
    results = args.results.expanduser().resolve()
    # Names, keys and every value a trial can get, before any work (split, Ray) starts.
    plan = studies(space_mod, args, synthetic=args.data is None)
    check_plan(plan)
    import ray
    from ray import tune

    from grid.experiment import prepare_bundle, record_experiment, resolve_data, spec_record
    from grid.leaderboard import build_leaderboard, format_table, write_leaderboard
    from trainables.trainable import train_depth

    started_here = not ray.is_initialized()
    if started_here:
        # "local" always starts a fresh local instance, never joining a cluster by accident.
        local = args.address in (None, "local")
        # The synthetic profile uses pretrained weights only if they are already on this
        # machine: look them up offline instead of waiting on hub retries with no network.
        env = {"HF_HUB_OFFLINE": "1"} if args.data is None and local else {}
        ray.init(address=args.address or "local", include_dashboard=False if local else None,
                 configure_logging=False, runtime_env={"env_vars": env} if env else None)
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
        experiment_dir = results / (args.name or args.space)
        signature = {"space": args.space, "studies": [[n, stable(s)] for n, s in plan],
                     "data": spec_record(spec), "split": bundle.split_id, "storage": storage}
        record_experiment(experiment_dir, {  # refuses a resume with other settings: nothing written
            "name": experiment_dir.name, "space": args.space, "storage": storage, "signature": signature,
            "data": spec_record(spec), "split": str(experiment_dir / "split.json"), "synthetic": synthetic,
            "split_method": args.split, "split_threshold": args.split_threshold,
            "image_size": plan[0][1].get("image_size", [426, 560]), "gpus_per_trial": gpus,
            "gpu_rule": gpu_plan.reason, "tune_dirs": [f"{storage}/{n}" for n, _ in plan],
        })
        split.to_json(experiment_dir / "split.json")
        trainable = tune.with_parameters(train_depth, data=bundle)
        for tune_name, param_space in plan:
            make_tuner(trainable, tune_name, param_space, space_mod.SEARCH, args, storage, gpus).fit()
    finally:
        if started_here:
            ray.shutdown()
    df = build_leaderboard(experiment_dir)
    write_leaderboard(df, experiment_dir)
    print("\n" + format_table(df) + f"\n\nLeaderboard: {experiment_dir / 'leaderboard.csv'}")
    return experiment_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from grid.leaderboard import read_leaderboard
    from trainables.data import DataError

    try:
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
