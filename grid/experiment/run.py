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
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from grid.experiment.config import RunConfig
from grid.experiment.plan import ExperimentError, check_archs, check_values
from grid.experiment.record import Experiment
from grid.experiment.spaces import Plan, load_space, stable, studies

if TYPE_CHECKING:
    import pandas as pd

    from grid.experiment.gpus import GpuPlan
    from grid.split.compute import Split
    from trainables.data import DatasetSpec, Item
    from trainables.loop import DataBundle

# Heavy modules (torch, ray, the model zoo, pandas) are imported where they are used, so that a
# wrong setting is reported within seconds, before any of them loads.

ADDRESS_TIMEOUT_S = 2.0  # a Ray head answers a TCP connect at once; nothing there: refused or silent


def _planned(cfg: RunConfig) -> tuple[ModuleType, Plan, set[str], set[str]]:
    """Plugins (their architectures must be known to the checks), the space, its plan, and every
    value a trial can get checked; returns the architectures too (checked against the zoo later)."""
    from trainables.plugins import PluginError, load_plugins

    try:
        load_plugins(list(cfg.plugins))
    except PluginError as e:
        raise ExperimentError(str(e)) from e
    space_mod = load_space(cfg.space)
    plan = studies(space_mod, cfg)
    _, archs, lr_split = check_values(plan)
    return space_mod, plan, archs, lr_split


def validated_plan(cfg: RunConfig) -> tuple[ModuleType, Plan]:
    """The space and its plan, every name, key and value a trial can get checked (no Ray yet)."""
    space_mod, plan, archs, lr_split = _planned(cfg)
    check_archs(archs, lr_split)
    return space_mod, plan


def check_writable(folder: Path, *, create: bool = True) -> None:
    """Fail before any work when results cannot be written in ``folder``: it is made (the run
    writes there next) and probed. ``create=False`` (``--dry-run``) makes nothing: the nearest
    folder that exists takes the probe file, removed at once."""
    import tempfile

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(0, f"{existing} is a file, not a folder")
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder if create else existing, prefix=".write-test"):
            pass
    except OSError as e:
        raise ExperimentError(f"{folder}: cannot write results there ({e.strerror or e})") from e


def storage_root(cfg: RunConfig) -> str:
    """Tune's storage: ``--storage`` (absolute path or URI), else ``<results>/ray``."""
    storage = cfg.storage or str(cfg.results.expanduser().resolve() / "ray")
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def check_address(address: str | None, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """``--address HOST:PORT`` or ``ray://HOST:PORT``: a TCP connect before Ray tries (and
    retries, for half a minute) to join a cluster that is not there. ``auto`` is Ray's to find."""
    if address in (None, "local", "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ExperimentError(f"--address {address}: no Ray cluster answers at {host}:{port} ({reason}); "
                              "is the cluster up (`ray status` on its head node)?") from None


def signature(cfg: RunConfig, plan: Plan, spec: DatasetSpec, storage: str, eval_sets: tuple = (),
              split: str | None = None) -> dict[str, Any]:
    """What a resume must match: space, studies, data, split id, storage (and the eval sets when
    given: experiments recorded before ``--eval-data`` existed still resume). Without ``split``
    (before it is computed) the key is left out."""
    from grid.experiment.eval_data import eval_record
    from grid.experiment.prepare import spec_record

    sig = {"space": cfg.space, "studies": [[n, stable(s)] for n, s in plan], "data": spec_record(spec),
           **({"split": split} if split is not None else {}), "storage": storage}
    if eval_sets:
        sig["eval_data"] = eval_record(eval_sets)
    return sig


@dataclass(frozen=True)
class Checked:
    """What the checks before Ray read: the plan, the prices, the data, the eval sets."""

    space_mod: ModuleType
    plan: Plan
    prices: dict[str, float]
    spec: DatasetSpec  # for the built-in scenes: where they will be generated
    items: list[Item] | None  # None: the built-in scenes, generated after the checks
    storage: str
    eval_sets: tuple


def _split_params(cfg: RunConfig, spec: DatasetSpec) -> dict[str, Any]:
    return {"method": cfg.split, "threshold": cfg.split_threshold, "val_fraction": cfg.val_fraction,
            "seed": cfg.seed, "crop": spec.crop and list(spec.crop)}


def preflight(cfg: RunConfig, *, dry_run: bool = False) -> Checked:
    """Every check that needs no Ray, cheapest first; computes nothing.

    The plan's values, the prices, the address, the GPUs and CPUs of a new local Ray (not for
    ``dry_run``), the ``--eval-data`` sets' files, the folders (made, unless ``dry_run``: the only
    thing written),
    the data (the list, every item's headers), a ``--name`` that holds other settings and the
    weights; then, with the model zoo loaded (seconds), the architectures and the eval sets.
    """
    import ray

    from grid.experiment.cost import read_prices
    from grid.experiment.gpus import check_cpus, decide, local_node
    from grid.experiment.prepare import (
        check_eval_data,
        check_resume,
        check_weights,
        checked_items,
        data_spec,
    )

    space_mod, plan, archs, lr_split = _planned(cfg)
    prices = read_prices(cfg.prices)
    check_address(cfg.address)
    # A new Ray on this machine: its resources are known now. (--dry-run previews a plan that may
    # be meant for a cluster: it does not hold it to this machine's.)
    if cfg.address in (None, "local") and not ray.is_initialized() and not dry_run:
        cpus, gpus = local_node()
        decide(cfg.gpus_per_trial, [gpus], ())  # refuses GPUs it lacks, as cluster_gpus would
        check_cpus(cfg.cpus_per_trial, [cpus], [])
    check_eval_data(cfg.eval_data)
    results = cfg.results.expanduser().resolve()
    storage = storage_root(cfg)
    for folder in ([Path(storage)] if "://" not in storage else []) + [results]:
        check_writable(folder, create=not dry_run)
    spec = data_spec(cfg.data, results, **cfg.data_settings())
    items = None if cfg.synthetic else checked_items(spec)
    folder, split = results / cfg.experiment_name, _split_params(cfg, spec)
    if not cfg.eval_data:  # else below, once the eval sets are read
        check_resume(folder, signature(cfg, plan, spec, storage), split)
    check_weights(plan, spec, items, cache_dir=results / "splits", method=cfg.split, threshold=cfg.split_threshold,
                  val_fraction=cfg.val_fraction, seed=cfg.seed)
    check_archs(archs, lr_split)
    eval_sets = _eval_sets(cfg)
    if eval_sets:
        check_resume(folder, signature(cfg, plan, spec, storage, eval_sets), split)
    return Checked(space_mod, plan, prices, spec, items, storage, eval_sets)


def _eval_sets(cfg: RunConfig) -> tuple:
    from grid.experiment.eval_data import resolve_eval_sets

    return resolve_eval_sets(list(cfg.eval_data)) if cfg.eval_data else ()


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


def prepare(cfg: RunConfig, checked: Checked | None = None) -> Prepared:
    """The dataset (the built-in scenes without ``--data``), its split (cached), the eval sets;
    ``checked``: what ``preflight`` already read."""
    from grid.experiment.prepare import prepare_bundle, resolve_data

    results = cfg.results.expanduser().resolve()
    if checked is not None and checked.items is not None:
        spec, synthetic, items = checked.spec, False, checked.items
    else:
        (spec, synthetic), items = resolve_data(cfg.data, results, **cfg.data_settings()), None
    bundle, split = prepare_bundle(spec, results, items=items, seed=cfg.seed, val_fraction=cfg.val_fraction,
                                   method=cfg.split, threshold=cfg.split_threshold)
    print(f"Split ({cfg.split}): {len(bundle.train)} train / {len(bundle.val)} val images ({bundle.split_id})")
    eval_sets = checked.eval_sets if checked is not None else _eval_sets(cfg)
    return Prepared(bundle, split, synthetic, eval_sets)


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
        "gpu_rule": gpu_plan.reason, "tune_dirs": [f"{storage}/{n}" for n, _ in plan],
        "provenance": provenance, **({"prices": prices} if cfg.prices else {}),
    })
    data.split.to_json(folder / "split.json")
    return Experiment(folder, written)


def _unfinished(tune_dir: str) -> list[str]:
    """Trials Tune's saved state has as neither terminated nor errored (running, pending, paused)."""
    from grid.experiment.leaderboard import Storage, tune_statuses

    return [t for t, status in tune_statuses(Storage(tune_dir)).items() if status == "incomplete"]


def fit(cfg: RunConfig, space_mod: ModuleType, plan: Plan, data: Prepared, gpus: float, storage: str,
        provenance: dict[str, Any]) -> list[str]:
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
        tuner = make_tuner(trainable, tune_name, param_space, space_mod.SEARCH, cfg, storage, gpus)
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
    from trainables.provenance import provenance

    # Tune's legacy output takes grid.experiment.tuner's compact trial table; its new one prints
    # a configuration box per trial and ignores reporters.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with ray_connection(cfg):
        gpu_plan = cluster_gpus(cfg.gpus_per_trial)  # refuses GPUs no node can have: nothing written
        cluster_cpus(cfg.cpus_per_trial)  # and CPUs
        print(f"GPUs per trial: {gpu_plan.gpus_per_trial:g} ({gpu_plan.reason})")
        data = prepare(cfg, checked)
        prov = provenance(list(cfg.command) or None)
        experiment = record(cfg, checked.plan, data, gpu_plan, checked.storage, prov, checked.prices)
        interrupted = fit(cfg, checked.space_mod, checked.plan, data, gpu_plan.gpus_per_trial, checked.storage, prov)
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
