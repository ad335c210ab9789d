"""Every check a run can make before Ray starts (``preflight``), cheapest first, computing nothing.

The plan's values, the prices, ``--address`` (a TCP connect), this machine's GPUs and CPUs for a
new local Ray, the ``--eval-data`` files, the folders, the data (its list and every item's
headers: ``trainables.headers``), a ``--name`` that holds other settings, the weights the plan
needs; then, with the model zoo loaded, the architectures and the eval sets. A failing check is
one ``ExperimentError`` / ``DataError`` / ``ConfigError`` line; nothing is written but the empty
results and storage folders of a real run.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from grid.experiment.config import RunConfig
from grid.experiment.hub import check_hub_weights
from grid.experiment.plan import ExperimentError, check_archs, check_values, concrete_configs
from grid.experiment.spaces import Plan, load_space, stable, studies
from grid.experiment.tracking import check_tracking

if TYPE_CHECKING:
    from trainables.data import DatasetSpec, Item

ADDRESS_TIMEOUT_S = 2.0  # a Ray head answers a TCP connect at once; nothing there: refused or silent


def _planned(cfg: RunConfig) -> tuple[ModuleType, Plan]:
    """Plugins (their architectures must be known to the checks), the space, its plan, and every
    value a trial can get checked, and its architectures against the zoo's catalog."""
    from trainables.plugins import PluginError, load_plugins

    try:
        load_plugins(list(cfg.plugins))
    except PluginError as e:
        raise ExperimentError(str(e)) from e
    space_mod = load_space(cfg.space)
    plan = studies(space_mod, cfg)
    _, archs, lr_split = check_values(plan)
    check_archs(archs, lr_split)
    return space_mod, plan


def check_writable(folder: Path, *, create: bool = False) -> None:
    """Fail before any work when results cannot be written in ``folder``. Without ``create``
    (the checks before Ray: a refused run leaves nothing behind) nothing is made: the nearest
    folder that exists takes a probe file, removed at once; with it, ``folder`` is made first
    (``run``, once Ray's own checks have passed) and probed."""
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


def local_folders(storage: str, results: Path) -> list[Path]:
    """The folders a run writes to on this machine: a local storage, the results root."""
    return ([Path(storage)] if "://" not in storage else []) + [results]


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
    """Every check that needs no Ray, cheapest first; computes and writes nothing.

    The plan's values, the prices, the address, the GPUs and CPUs of a new local Ray (not for
    ``dry_run``), the ``--eval-data`` sets' files, that the folders can be written, the data (the
    list, every item's headers), a ``--name`` that holds other settings, the weights (MobileNetV2;
    the Hugging Face ones when the trials train on this machine), and the eval sets.
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
        split_cache,
    )

    space_mod, plan = _planned(cfg)
    prices = read_prices(cfg.prices)
    check_address(cfg.address)
    check_tracking(cfg)  # --log-to: the packages, MLflow's server
    # A new Ray on this machine: its resources are known now. (--dry-run previews a plan that may
    # be meant for a cluster: it does not hold it to this machine's.)
    if cfg.address in (None, "local") and not ray.is_initialized() and not dry_run:
        cpus, gpus = local_node()
        decide(cfg.gpus_per_trial, [gpus], ())  # refuses GPUs it lacks, as cluster_gpus would
        if cfg.cpus_per_trial is not None:
            check_cpus(cfg.cpus_per_trial, [cpus], [])
    check_eval_data(cfg.eval_data, cfg.cache_root)
    results = cfg.results.expanduser().resolve()
    storage = storage_root(cfg)
    for folder in local_folders(storage, results):
        check_writable(folder)  # made by the run only after Ray's checks: a refused run writes nothing
    spec = data_spec(cfg.data, results, cache_dir=cfg.cache_root, **cfg.data_settings())
    items = None if cfg.synthetic else checked_items(spec)
    folder, split = results / cfg.experiment_name, _split_params(cfg, spec)
    folder = stored_record(folder, storage)
    if not cfg.eval_data:  # else below, once the eval sets are read
        check_resume(folder, signature(cfg, plan, spec, storage), split)
    check_weights(plan, spec, items, cache_dir=split_cache(spec, results, cfg.cache_dir), method=cfg.split, threshold=cfg.split_threshold,
                  val_fraction=cfg.val_fraction, seed=cfg.seed)
    if cfg.address in (None, "local"):  # a cluster's workers fill their own caches
        check_hub_weights(c for _, space in plan for c in concrete_configs(space))
    if items:
        check_protocol_frames(plan, spec, items[0])
    eval_sets = eval_sets_of(cfg)
    if eval_sets:
        check_resume(folder, signature(cfg, plan, spec, storage, eval_sets), split)
    return Checked(space_mod, plan, prices, spec, items, storage, eval_sets)


def check_protocol_frames(plan: Plan, spec: DatasetSpec, item: Item) -> None:
    """A validation ``protocol`` whose crop needs frames of one size (``nyu``: 480x640) against
    the data's first depth map: a mismatch is one line before Ray, not an error in every trial's
    first validation. A pack is not opened for this (its first shard would be downloaded)."""
    from trainables.data import load_depth
    from trainables.protocols import ProtocolError, get_protocol

    names = {str(c.get("protocol", "none")) for _, space in plan for c in concrete_configs(space)}
    protocols = [p for p in map(get_protocol, sorted(names)) if p.crops]
    if not protocols or getattr(spec, "pack", None) is not None:
        return
    shape = load_depth(item, spec).shape
    for protocol in protocols:
        try:
            protocol.region(shape, spec.crop)
        except ProtocolError as e:
            raise ExperimentError(f"--protocol {protocol.name}: {e} ({item.depth})") from None


def stored_record(folder: Path, storage: str) -> Path:
    """The folder whose record a resume must match: ``results/<name>`` when it holds one, else on
    a fresh head the copy of the record a bucket keeps (``<storage>/<name>/``, fetched into the
    node's cache), so that a resume with other settings is refused there too."""
    from grid.experiment.remote import fetch_record, record_uri
    from trainables.io import is_uri

    if (folder / "experiment.json").is_file() or not is_uri(storage):
        return folder
    return fetch_record(record_uri(storage, folder.name), missing_ok=True) or folder


def eval_sets_of(cfg: RunConfig) -> tuple:
    from grid.experiment.eval_data import resolve_eval_sets

    return resolve_eval_sets(list(cfg.eval_data), cfg.cache_root) if cfg.eval_data else ()
