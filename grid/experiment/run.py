"""Run (or resume) a grid: ``run(RunConfig) -> Experiment``, and ``run_grid`` for notebooks.

Assembles the trainable, the search space, Tune and the run config; no training logic here.
The steps: check the whole plan (before any work), connect to Ray, prepare the data and the
shared split, record the experiment (refusing a resume with other settings), fit one Tuner per
study, write the leaderboard. Re-running the same config resumes an interrupted experiment.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from grid.experiment.config import RunConfig
from grid.experiment.plan import ExperimentError, check_plan
from grid.experiment.record import Experiment
from grid.experiment.spaces import Plan, load_space, stable, studies

if TYPE_CHECKING:
    import pandas as pd

    from grid.experiment.gpus import GpuPlan
    from grid.split.compute import Split
    from trainables.loop import DataBundle

# Heavy modules (torch, ray, the model zoo, pandas) are imported where they are used, so that a
# wrong setting is reported within seconds, before any of them loads.


def validated_plan(cfg: RunConfig) -> tuple[ModuleType, Plan]:
    """The space and its plan, every name, key and value a trial can get checked (no Ray yet).
    Plugins are imported first: their architectures must be known to the check."""
    from trainables.plugins import PluginError, load_plugins

    try:
        load_plugins(list(cfg.plugins))
    except PluginError as e:
        raise ExperimentError(str(e)) from e
    space_mod = load_space(cfg.space)
    plan = studies(space_mod, cfg)
    check_plan(plan)
    return space_mod, plan


def check_writable(folder: Path) -> None:
    """Fail before any work when results cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ExperimentError(f"{folder}: cannot write results there ({e.strerror or e})") from e


def storage_root(cfg: RunConfig) -> str:
    """Tune's storage: ``--storage`` (absolute path or URI), else ``<results>/ray``."""
    storage = cfg.storage or str(cfg.results.expanduser().resolve() / "ray")
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


@contextmanager
def ray_connection(cfg: RunConfig):
    """Ray for the run: the caller's when initialised, else a new local one ("local", the
    default, never joins a cluster by accident) or ``--address``'s, shut down afterwards."""
    import ray

    from trainables.plugins import runtime_env_modules

    if ray.is_initialized():
        yield
        return
    local = cfg.address in (None, "local")
    # The synthetic profile uses pretrained weights only if they are already on this machine:
    # look them up offline instead of waiting on hub retries with no network.
    env = {"HF_HUB_OFFLINE": "1"} if cfg.synthetic and local else {}
    runtime_env = {"env_vars": env, "py_modules": runtime_env_modules(list(cfg.plugins))}  # plugins reach workers
    ray.init(address=cfg.address or "local", include_dashboard=False if local else None,
             configure_logging=False, runtime_env={k: v for k, v in runtime_env.items() if v} or None)
    try:
        yield
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Prepared:
    """What every trial shares: the data bundle (through Ray's object store) and its split."""

    bundle: DataBundle
    split: Split
    synthetic: bool
    eval_sets: tuple


def prepare(cfg: RunConfig) -> Prepared:
    """The dataset (the built-in scenes without ``--data``), its split (cached), the eval sets."""
    from grid.experiment.eval_data import resolve_eval_sets
    from grid.experiment.prepare import prepare_bundle, resolve_data

    spec, synthetic = resolve_data(cfg.data, cfg.results.expanduser().resolve(), **cfg.data_settings())
    bundle, split = prepare_bundle(spec, cfg.results.expanduser().resolve(), seed=cfg.seed,
                                   val_fraction=cfg.val_fraction, method=cfg.split, threshold=cfg.split_threshold)
    print(f"Split ({cfg.split}): {len(bundle.train)} train / {len(bundle.val)} val images ({bundle.split_id})")
    return Prepared(bundle, split, synthetic, resolve_eval_sets(list(cfg.eval_data)))


def record(cfg: RunConfig, plan: Plan, data: Prepared, gpu_plan: GpuPlan, storage: str,
           provenance: dict[str, Any], prices: dict[str, float]) -> Experiment:
    """Write ``experiment.json`` and ``split.json``; a resume with other settings is refused
    before anything is written."""
    from grid.experiment.eval_data import eval_record
    from grid.experiment.prepare import record_experiment, spec_record

    folder = cfg.results.expanduser().resolve() / cfg.experiment_name
    spec = data.bundle.spec
    signature = {"space": cfg.space, "studies": [[n, stable(s)] for n, s in plan],
                 "data": spec_record(spec), "split": data.bundle.split_id, "storage": storage}
    if data.eval_sets:  # only then: experiments recorded before --eval-data existed still resume
        signature["eval_data"] = eval_record(data.eval_sets)
    written = record_experiment(folder, {
        "name": folder.name, "space": cfg.space, "storage": storage, "signature": signature,
        "data": spec_record(spec), "split": str(folder / "split.json"), "synthetic": data.synthetic,
        "split_method": cfg.split, "split_threshold": cfg.split_threshold,
        "image_size": plan[0][1].get("image_size", [426, 560]), "gpus_per_trial": gpu_plan.gpus_per_trial,
        "gpu_rule": gpu_plan.reason, "tune_dirs": [f"{storage}/{n}" for n, _ in plan],
        "provenance": provenance, **({"prices": prices} if cfg.prices else {}),
    })
    data.split.to_json(folder / "split.json")
    return Experiment(folder, written)


def fit(cfg: RunConfig, space_mod: ModuleType, plan: Plan, data: Prepared, gpus: float, storage: str,
        provenance: dict[str, Any]) -> None:
    """One Tuner per study, each new or restored from its storage."""
    from ray import tune

    from grid.experiment.tuner import make_tuner
    from trainables.plugins import resolved
    from trainables.trainable import train_depth

    trainable = tune.with_parameters(train_depth, data=data.bundle, provenance=provenance,
                                     plugins=resolved(list(cfg.plugins)), eval_sets=data.eval_sets)
    for tune_name, param_space in plan:
        make_tuner(trainable, tune_name, param_space, space_mod.SEARCH, cfg, storage, gpus).fit()


def run(cfg: RunConfig) -> Experiment:
    """Run (or resume) the experiment; returns it with its leaderboard written."""
    from grid.experiment.cost import cost_line, read_prices
    from grid.experiment.gpus import cluster_gpus
    from grid.experiment.leaderboard import format_table
    from trainables.provenance import provenance

    space_mod, plan = validated_plan(cfg)  # before any work (split, Ray) starts
    prices = read_prices(cfg.prices)  # ditto
    # Tune's legacy output takes grid.experiment.tuner's compact trial table; its new one prints
    # a configuration box per trial and ignores reporters.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with ray_connection(cfg):
        gpu_plan = cluster_gpus(cfg.gpus_per_trial)  # refuses GPUs no node can have: nothing written
        print(f"GPUs per trial: {gpu_plan.gpus_per_trial:g} ({gpu_plan.reason})")
        storage = storage_root(cfg)
        if "://" not in storage:
            check_writable(Path(storage))
        check_writable(cfg.results.expanduser().resolve())
        data = prepare(cfg)
        prov = provenance(list(cfg.command) or None)
        experiment = record(cfg, plan, data, gpu_plan, storage, prov, prices)
        fit(cfg, space_mod, plan, data, gpu_plan.gpus_per_trial, storage, prov)
    board = experiment.leaderboard()
    experiment.write_leaderboard(board)
    print("\n" + format_table(board) + f"\n\nLeaderboard: {experiment / 'leaderboard.csv'}")
    print(cost_line(board))
    return experiment


def run_grid(space: str = "all_models", data: str | Path | None = None,
             **settings: Any) -> tuple[pd.DataFrame, Experiment]:
    """Run (or resume) a grid from Python; returns ``(leaderboard DataFrame, Experiment)``.

    Every keyword is a ``RunConfig`` field (a ``depth-grid run`` option with ``_`` for ``-``);
    an unknown one raises ``TypeError``, a bad value ``ConfigError`` naming it.

    Example:
        >>> board, exp = run_grid("smoke", data="scenes/", results="/tmp/results", set={"epochs": 2})
        >>> board[["arch", "si_rmse", "status"]]
    """
    experiment = run(RunConfig(space=space, data=None if data is None else Path(data), **settings))
    return experiment.saved_leaderboard(), experiment
