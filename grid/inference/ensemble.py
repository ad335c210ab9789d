"""Top-K ensembles: the best K finished trials of an experiment predict every image together.

    depth-grid predict --experiment results/grid1 --ensemble 3 --input photos/ --out preds/
    depth-grid submit --experiment results/grid1 --ensemble 3 --data data/ --out sub.csv
    depth-grid evaluate --experiment results/grid1 --ensemble 3

Each member is one trial's best checkpoint, run with its own settings at its own training input
size (``grid.inference.predict.predict_items``), its depth resized back to the image's own resolution in
log-depth. The ensemble's depth is the exponential of the members' mean log-depth: the geometric
mean, which is what a scale-invariant log metric rewards (averaging metres would let the
member that predicts farther dominate). Members are the best K rows of ``leaderboard.csv`` by
validation ``si_rmse`` among the ``finished`` trials that have a checkpoint.

``--ensemble K`` with ``grid.evaluate`` scores the ensemble and each member, on the same
images in the same pass, on the experiment's validation split, writes ``ensemble.json`` into the
experiment folder and adds the table under the leaderboard in ``leaderboard.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grid.experiment.leaderboard import ENSEMBLE_FILE
from trainables.io import write_json

if TYPE_CHECKING:
    from grid.experiment.record import Experiment
    from grid.inference.inputs import DataSettings, Inputs
    from trainables.data import DatasetSpec, Item
    from trainables.models import DepthModel

log = logging.getLogger(__name__)
CHUNK = 64  # images predicted by every member before their maps are averaged (bounds memory)


@dataclass(frozen=True)
class Member:
    """One trial of the ensemble: its model in eval mode and the input size it trained at."""

    trial_id: str
    arch: str
    si_rmse: float  # its validation si_rmse in the leaderboard
    checkpoint: Path
    model: DepthModel
    size: tuple[int, int]
    tta: bool = False  # flip test-time averaging, as the trial validated (or --tta/--no-tta)


def load_members(experiment: Experiment, k: int, *, device: str = "cpu",
                 image_size: tuple[int, int] | None = None, tta: bool | None = None) -> list[Member]:
    """The ensemble's members: the experiment's best ``k`` finished trials, each at its
    checkpoint's input size (``image_size`` overrides) with its flip TTA setting (``tta`` overrides)."""
    from grid.inference.checkpoints import input_size, load_checkpoint_model, use_tta

    members = []
    for row in experiment.top_trials(k).itertuples():
        model, info = load_checkpoint_model(row.checkpoint, device)
        members.append(Member(str(row.trial_id), str(row.arch), float(row.si_rmse), info["path"], model,
                              input_size(info, image_size, experiment), use_tta(info, tta)))
    log.info("ensemble of %d: %s", len(members),
             ", ".join(f"{m.arch} {m.trial_id} ({m.size[0]}x{m.size[1]})" for m in members))
    return members


def ensemble_items(members: Sequence[Member], items: list[Item], spec: DatasetSpec, *,
                   batch_size: int = 8, device: str = "cpu", num_workers: int = 0,
                   progress: bool = True) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    """Yield ``(index into items, ensemble depth (H, W) metres, each member's depth)``, in list
    order, every map at the image's own size."""
    from tqdm import tqdm

    from grid.inference.predict import predict_items

    with tqdm(total=len(items), unit="img", disable=None if progress else True, desc="ensemble") as bar:
        for start in range(0, len(items), CHUNK):
            part = items[start:start + CHUNK]
            maps: list[list[np.ndarray]] = []
            for m in members:
                out: list[Any] = [None] * len(part)
                for i, depth in predict_items(m.model, part, spec, image_size=m.size, batch_size=batch_size,
                                              device=device, num_workers=num_workers, progress=False, tta=m.tta):
                    out[i] = depth
                maps.append(out)
            for j in range(len(part)):
                depths = [member[j] for member in maps]
                log_mean = np.mean([np.log(d.astype(np.float64)) for d in depths], axis=0)
                yield start + j, np.exp(log_mean).astype(np.float32), depths
            bar.update(len(part))


def ensemble_depths(experiment: Experiment, k: int, found: Inputs, *, image_size: tuple[int, int] | None = None,
                    batch_size: int = 8, device: str | None = None, num_workers: int = 0, progress: bool = True,
                    tta: bool | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """The images' headers and ``device`` checked, then the top-``k`` members loaded and their
    mean log-depth yielded per item: what the ensemble's predict and submit share."""
    from grid.inference.inputs import check_images
    from grid.inference.predict import check_device, default_device

    check_images(found.items)
    check_device(device)
    device = device or default_device()
    members = load_members(experiment, k, device=device, image_size=image_size, tta=tta)
    log.info("inputs: %s; ensemble of %d", found.describe, len(members))
    return ((i, depth) for i, depth, _ in ensemble_items(
        members, found.items, found.spec, batch_size=batch_size, device=device, num_workers=num_workers,
        progress=progress))


def predict_ensemble(experiment: Experiment, k: int, source: str | Path, out: str | Path, *,
                     image_size: tuple[int, int] | None = None, batch_size: int = 8,
                     device: str | None = None, num_workers: int = 0, png: bool = True,
                     progress: bool = True, explicit: DataSettings | None = None,
                     tta: bool | None = None, overwrite: bool = False,
                     cache_dir: str | Path | None = None) -> list[Path]:
    """``grid.inference.predict.predict`` with the top-``k`` ensemble; returns the ``.npy`` paths
    written. The inputs and outputs are checked before any member loads."""
    from grid.inference.inputs import NO_SETTINGS, DataSettings, collect
    from grid.inference.outputs import Reads
    from grid.inference.predict import prediction_outputs
    from grid.inference.predict import write_predictions as write

    experiment.top_trials(k)  # enough finished trials, before any image is read
    found = collect(source, explicit=explicit or NO_SETTINGS, experiment=DataSettings.of(experiment),
                    cache_dir=cache_dir)
    prediction_outputs(found.items, out, png=png, reads=Reads().add_inputs(found).add_experiment(experiment),
                       overwrite=overwrite)
    depths = ensemble_depths(experiment, k, found, image_size=image_size, batch_size=batch_size, device=device,
                             num_workers=num_workers, progress=progress, tta=tta)
    return write(depths, found.items, out, png=png, title_suffix=f" (top-{k} ensemble)")


def evaluate_ensemble(experiment: Experiment, k: int, *, device: str | None = None,
                      batch_size: int = 8, num_workers: int = 0, progress: bool = True) -> dict:
    """Score the top-``k`` ensemble and each member on the experiment's validation split, at
    each target's native resolution; write ``ensemble.json`` and refresh ``leaderboard.md``."""
    from grid.experiment.leaderboard import write_markdown
    from grid.inference.predict import default_device
    from trainables.data import DataError, load_depth
    from trainables.metrics import MetricAccumulator

    experiment.top_trials(k)  # enough finished trials, before any image is read
    spec, items = experiment.spec, experiment.validation_items()
    device = device or default_device()
    members = load_members(experiment, k, device=device)
    ensemble, singles = MetricAccumulator(), [MetricAccumulator() for _ in members]
    for i, depth, depths in ensemble_items(members, items, spec, batch_size=batch_size, device=device,
                                           num_workers=num_workers, progress=progress):
        target = load_depth(items[i], spec)
        ensemble.update(depth, target)
        for acc, d in zip(singles, depths, strict=True):
            acc.update(d, target)
    if ensemble.count == 0:
        raise DataError(f"{spec.list_path}: no validation item has a valid ground-truth pixel")
    record = {
        "k": len(members), "images": ensemble.count, "split": "validation", "ensemble": ensemble.result(),
        "members": [{"trial_id": m.trial_id, "arch": m.arch, "checkpoint": str(m.checkpoint),
                     "input_size": list(m.size), "leaderboard_si_rmse": m.si_rmse, "metrics": acc.result()}
                    for m, acc in zip(members, singles, strict=True)],
    }
    write_json(experiment / ENSEMBLE_FILE, record)
    write_markdown(experiment.saved_leaderboard(), experiment.path)
    return record


def submit_ensemble(experiment: Experiment, k: int, data: str | Path, out: str | Path, *,
                    list_file: str | None = None, npy_dir: str | Path | None = None,
                    image_size: tuple[int, int] | None = None, batch_size: int = 8,
                    device: str | None = None, num_workers: int = 0, progress: bool = True,
                    explicit: DataSettings | None = None, tta: bool | None = None,
                    overwrite: bool = False, cache_dir: str | Path | None = None) -> Path:
    """``grid.submit.submit`` with the top-``k`` ensemble: the same CSV format and ``.npy`` maps,
    the same checks of the inputs and outputs before any member loads."""
    from grid.inference.inputs import NO_SETTINGS, DataSettings
    from grid.inference.outputs import Reads
    from grid.inference.submit import submission_inputs, submission_outputs, write_submission

    experiment.top_trials(k)  # enough finished trials, before any image is read
    found, ids = submission_inputs(data, list_file, explicit=explicit or NO_SETTINGS,
                                   experiment=DataSettings.of(experiment), cache_dir=cache_dir)
    submission_outputs(found.items, out, npy_dir=npy_dir, reads=Reads().add_inputs(found).add_experiment(experiment),
                       overwrite=overwrite)
    depths = ensemble_depths(experiment, k, found, image_size=image_size, batch_size=batch_size, device=device,
                             num_workers=num_workers, progress=progress, tta=tta)
    return write_submission(depths, found.items, ids, out, npy_dir=npy_dir, source=f"top-{k} ensemble")
