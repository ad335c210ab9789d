"""Run (or resume) a grid: ``run(RunConfig) -> Experiment``, and ``run_grid`` for notebooks.

Assembles the trainable, the search space, Tune and the run config; no training logic here.
The steps: every check that needs no Ray (``preflight``: the plan, the data's headers, the
folders, the address, the CPUs, a ``--name`` clash, the architectures, the weights), connect to
Ray (the resources no node can give), prepare the data and the shared split, record the
experiment, fit one Tuner per study, write the leaderboard. Re-running the same config resumes
an interrupted experiment; Ctrl-C stops the trials, and the leaderboard says which were
interrupted.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from grid.experiment.config import RunConfig
from grid.experiment.plan import ExperimentError, trial_count
from grid.experiment.preflight import (
    Checked,
    check_writable,
    eval_sets_of,
    local_folders,
    preflight,
    signature,
)
from grid.experiment.record import Experiment
from grid.experiment.spaces import Plan

if TYPE_CHECKING:
    import pandas as pd

    from grid.experiment.gpus import GpuPlan
    from grid.split.compute import Split
    from trainables.loop import DataBundle

# Heavy modules (torch, ray, the model zoo, pandas) are imported where they are used, so that a
# wrong setting is reported within seconds, before any of them loads.

PASSED_ENV = ("HF_TOKEN", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AWS_DEFAULT_REGION", "AWS_REGION")


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
    # Credentials and endpoints the driver was given reach the trials: the Hub's (gated or private
    # repos), an S3-compatible server's (MinIO, Ceph: AWS_ENDPOINT_URL). Cloud nodes usually have
    # their own (a service account, an instance role); these add to them.
    env.update({k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)})
    runtime_env = {"env_vars": env, "py_modules": runtime_env_modules(list(cfg.plugins))}  # plugins reach workers
    try:
        ray.init(address=cfg.address or "local", include_dashboard=False if local else None,
                 configure_logging=False, runtime_env={k: v for k, v in runtime_env.items() if v} or None)
    except ConnectionError as e:  # Ray's "Failed to connect", "Could not find any running Ray instance"
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ExperimentError(f"--address {cfg.address}: cannot connect to a Ray cluster ({first})") from None
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
    audit: dict[str, Any] | None = None  # the eval sets' leakage audit (grid.experiment.prepare.audit_eval_sets)


def prepare(cfg: RunConfig, checked: Checked | None = None, gpu_plan: GpuPlan | None = None) -> Prepared:
    """The dataset (the built-in scenes without ``--data``), its split (cached), the eval sets;
    ``checked``: what ``preflight`` already read; ``gpu_plan``: on a cluster whose trials take
    GPUs, the split is computed on a GPU worker while the trials' nodes start
    (``grid.experiment.split_task``)."""
    from grid.experiment.prepare import (
        audit_eval_sets,
        prepare_bundle,
        resolve_data,
        split_cache,
        split_from_storage,
    )
    from grid.experiment.remote import record_uri
    from grid.experiment.split_task import request_trial_nodes, wanted
    from trainables.io import is_uri

    results = cfg.results.expanduser().resolve()
    if checked is not None and checked.items is not None:
        spec, synthetic, items = checked.spec, False, checked.items
    else:
        (spec, synthetic), items = resolve_data(cfg.data, results, cache_dir=cfg.cache_root, **cfg.data_settings()), None
    storage = checked.storage if checked is not None else ""
    stored = is_uri(storage) and split_from_storage(record_uri(storage, cfg.experiment_name),
                                                            split_cache(spec, results, cfg.cache_dir))
    gpu_worker = gpu_plan is not None and wanted(cfg.address, gpu_plan.gpus_per_trial)
    if gpu_worker and checked is not None:
        trials = trial_count(checked.plan, checked.space_mod.SEARCH)
        request_trial_nodes(min(trials, cfg.max_concurrent or trials), gpu_plan.gpus_per_trial,
                            gpu_plan.cpus_per_trial, gpu_plan.accelerator)
    bundle, split = prepare_bundle(spec, results, items=items, seed=cfg.seed, val_fraction=cfg.val_fraction,
                                   method=cfg.split, threshold=cfg.split_threshold, gpu_worker=gpu_worker,
                                   accelerator=gpu_plan.accelerator if gpu_plan is not None else None,
                                   cache_dir=cfg.cache_dir)
    print(f"Split ({cfg.split}): {len(bundle.train)} train / {len(bundle.val)} val images ({bundle.split_id})"
          + (f", the record's in {record_uri(storage, cfg.experiment_name)}" if stored else ""))
    eval_sets = checked.eval_sets if checked is not None else eval_sets_of(cfg)
    audit = audit_eval_sets(bundle, split, eval_sets, results, cfg.cache_dir)  # prints a warning per leaky set
    return Prepared(bundle, split, synthetic, eval_sets, audit)


def record(cfg: RunConfig, plan: Plan, data: Prepared, gpu_plan: GpuPlan, storage: str,
           provenance: dict[str, Any], prices: dict[str, float]) -> Experiment:
    """Write ``experiment.json`` and ``split.json``; a resume with other settings is refused
    before anything is written."""
    from grid.experiment.prepare import record_experiment, spec_record

    folder = cfg.results.expanduser().resolve() / cfg.experiment_name
    spec = data.bundle.spec
    written = record_experiment(folder, {
        "name": folder.name, "space": cfg.space, "storage": storage,
        "signature": signature(cfg, plan, spec, storage, data.eval_sets, split=data.bundle.split_id),
        "data": spec_record(spec), "split": str(folder / "split.json"), "synthetic": data.synthetic,
        "split_method": cfg.split, "split_threshold": cfg.split_threshold,
        "image_size": plan[0][1].get("image_size", [426, 560]), "gpus_per_trial": gpu_plan.gpus_per_trial,
        "gpu_rule": gpu_plan.reason, "accelerator": gpu_plan.accelerator, "cpus_per_trial": gpu_plan.cpus_per_trial, "tune_dirs": [f"{storage}/{n}" for n, _ in plan],
        "provenance": provenance, **({"prices": prices} if cfg.prices else {}),
        **({"leakage_audit": data.audit} if data.audit else {}),
    })
    data.split.to_json(folder / "split.json")
    experiment = Experiment(folder, written)
    experiment.sync()  # a bucket keeps the record from the start: a lost head loses nothing
    return experiment


def _unfinished(tune_dir: str) -> list[str]:
    """Trials Tune's saved state has as neither terminated nor errored (running, pending, paused)."""
    from grid.experiment.leaderboard import Storage, tune_statuses

    return [t for t, status in tune_statuses(Storage(tune_dir)).items() if status == "incomplete"]


def fit(cfg: RunConfig, space_mod: ModuleType, plan: Plan, data: Prepared, gpus: float, storage: str,
        provenance: dict[str, Any], accelerator: str | None = None, cpus: float = 1.0) -> list[str]:
    """One Tuner per study, each new or restored from its storage. Returns the trials an
    interruption left unfinished, and starts no further study then.

    On Ctrl-C (SIGINT) Tune's own handler, installed inside ``fit``, stops the trials, saves
    its state and returns; a second Ctrl-C raises ``KeyboardInterrupt`` from wherever it lands.
    Either way the trials that did not end are what the same command resumes.
    """
    from ray import tune

    from grid.experiment.tuner import make_tuner
    from trainables.plugins import resolved
    from trainables.trainable import train_depth

    trainable = tune.with_parameters(train_depth, data=data.bundle, provenance=provenance,
                                     plugins=resolved(list(cfg.plugins)), eval_sets=data.eval_sets)
    for tune_name, param_space in plan:
        tuner = make_tuner(trainable, tune_name, param_space, space_mod.SEARCH, cfg, storage, gpus, accelerator, cpus)
        handler = signal.getsignal(signal.SIGINT)
        try:
            tuner.fit()
        except KeyboardInterrupt:
            pass  # the state Tune saved last says which trials did not end
        finally:  # Tune leaves its handler installed after fit: later Ctrl-Cs must not be swallowed
            if handler is not None:
                signal.signal(signal.SIGINT, handler)
        # Tune's final snapshot has every trial terminated or errored, unless it was stopped
        # (its trials' in-memory status says TERMINATED then too: the snapshot is the record).
        stopped = _unfinished(f"{storage.rstrip('/')}/{tune_name}")
        if stopped:
            return stopped
    return []


def run(cfg: RunConfig) -> Experiment:
    """Run (or resume) the experiment; returns it with its leaderboard written. Trials a Ctrl-C
    stopped have the status ``interrupted`` there (the same command resumes them)."""
    checked = preflight(cfg)  # before any work (split, Ray) starts, and before torch loads
    from grid.experiment.cost import cost_line
    from grid.experiment.gpus import cluster_cpus, cluster_gpus
    from grid.experiment.leaderboard import build_leaderboard, format_table
    from grid.experiment.reach import cluster_storage_reach
    from grid.experiment.split_task import release, wanted
    from grid.experiment.tuner import check_world_size
    from trainables.provenance import provenance

    # Tune's legacy output takes grid.experiment.tuner's compact trial table; its new one prints
    # a configuration box per trial and ignores reporters.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with ray_connection(cfg):
        # Refuses GPUs (or a GPU type) no node can have: nothing written.
        gpu_plan = cluster_gpus(cfg.gpus_per_trial, cfg.accelerator, checked.prices, cfg.cpus_per_trial)
        cluster_cpus(gpu_plan.cpus_per_trial)  # and CPUs
        check_world_size(checked.plan, gpu_plan.gpus_per_trial)  # data-parallel trials: accum_steps divides
        if cfg.address not in (None, "local"):  # a cluster joined: a folder some node cannot write is refused
            cluster_storage_reach(checked.storage, given=cfg.storage is not None)
        print(f"GPUs per trial: {gpu_plan.gpus_per_trial:g} ({gpu_plan.reason})")
        if gpu_plan.gpus_per_trial:
            print(f"Accelerator: {gpu_plan.accelerator or 'any'} ({gpu_plan.accelerator_reason}); "
                  f"CPUs per trial: {gpu_plan.cpus_reason}")
        for folder in local_folders(checked.storage, cfg.results.expanduser().resolve()):
            check_writable(folder, create=True)  # the first thing the run writes
        data = prepare(cfg, checked, gpu_plan)
        prov = provenance(list(cfg.command) or None)
        experiment = record(cfg, checked.plan, data, gpu_plan, checked.storage, prov, checked.prices)
        interrupted = fit(cfg, checked.space_mod, checked.plan, data, gpu_plan.gpus_per_trial, checked.storage, prov,
                          accelerator=gpu_plan.accelerator, cpus=gpu_plan.cpus_per_trial)
        if wanted(cfg.address, gpu_plan.gpus_per_trial):
            release()  # the split's request for the trials' nodes
    board = build_leaderboard(experiment.path, statuses=dict.fromkeys(interrupted, "interrupted"))
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
