"""Top-K ensembles: the best K finished trials of an experiment predict every image together.

    python -m grid.predict --experiment results/grid1 --ensemble 3 --input photos/ --out preds/
    python -m grid.submit --experiment results/grid1 --ensemble 3 --data data/ --out sub.csv
    python -m grid.evaluate --experiment results/grid1 --ensemble 3

Each member is one trial's best checkpoint, run with its own settings at its own training input
size (``grid.predict.predict_items``), its depth resized back to the image's own resolution in
log-depth. The ensemble's depth is the exponential of the members' mean log-depth: the geometric
mean, which is what a scale-invariant log metric rewards (averaging metres would let the
member that predicts farther dominate). Members are the best K rows of ``leaderboard.csv`` by
validation ``si_rmse`` among the ``finished`` trials that have a checkpoint.

``--ensemble K`` with ``grid.evaluate`` scores the ensemble and each member, on the same
images in the same pass, on the experiment's validation split, writes ``ensemble.json`` into the
experiment folder and adds the table under the leaderboard in ``leaderboard.md``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from grid.leaderboard import LeaderboardError, read_experiment, read_leaderboard
from trainables.io import write_json

if TYPE_CHECKING:
    from grid.inputs import DataSettings
    from trainables.data import DatasetSpec, Item
    from trainables.models import DepthModel

log = logging.getLogger(__name__)
ENSEMBLE_FILE = "ensemble.json"  # grid.evaluate --ensemble's result, shown in leaderboard.md
CHUNK = 64  # images predicted by every member before their maps are averaged (bounds memory)
SHOWN = ("si_rmse", "abs_rel", "rmse", "delta1")


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


def top_trials(experiment_dir: Path, k: int) -> pd.DataFrame:
    """The best ``k`` finished trials with a checkpoint, best validation ``si_rmse`` first."""
    if k < 1:
        raise ValueError(f"--ensemble must be >= 1, got {k}")
    df = read_leaderboard(experiment_dir)
    ok = df[(df.status == "finished") & df.si_rmse.notna() & df.checkpoint.notna()
            & (df.checkpoint.astype(str) != "")]
    if len(ok) < k:
        raise LeaderboardError(f"{experiment_dir}: --ensemble {k} needs {k} finished trials with a "
                               f"checkpoint; leaderboard.csv has {len(ok)}")
    return ok.sort_values("si_rmse", kind="stable").head(k)


def load_members(experiment_dir: str | Path, k: int, *, device: str = "cpu",
                 image_size: tuple[int, int] | None = None, tta: bool | None = None) -> list[Member]:
    """The ensemble's members, each at its checkpoint's input size (``image_size`` overrides) and
    with its trial's flip TTA setting (``tta`` overrides)."""
    from grid.predict import input_size, load_checkpoint_model, use_tta

    experiment_dir = Path(experiment_dir).expanduser()
    size = read_experiment(experiment_dir).get("image_size")
    fallback = (int(size[0]), int(size[1])) if size else None
    members = []
    for row in top_trials(experiment_dir, k).itertuples():
        model, info = load_checkpoint_model(row.checkpoint, device)
        members.append(Member(str(row.trial_id), str(row.arch), float(row.si_rmse), info["path"], model,
                              input_size(info, image_size, fallback), use_tta(info, tta)))
    log.info("ensemble of %d: %s", len(members),
             ", ".join(f"{m.arch} {m.trial_id} ({m.size[0]}x{m.size[1]})" for m in members))
    return members


def ensemble_items(members: Sequence[Member], items: list[Item], spec: DatasetSpec, *,
                   batch_size: int = 8, device: str = "cpu", num_workers: int = 0,
                   progress: bool = True) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    """Yield ``(index into items, ensemble depth (H, W) metres, each member's depth)``, in list
    order, every map at the image's own size."""
    from tqdm import tqdm

    from grid.predict import predict_items

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


def predict_ensemble(experiment_dir: str | Path, k: int, source: str | Path, out: str | Path, *,
                     image_size: tuple[int, int] | None = None, batch_size: int = 8,
                     device: str | None = None, num_workers: int = 0, png: bool = True,
                     progress: bool = True, explicit: DataSettings | None = None,
                     experiment: DataSettings | None = None, tta: bool | None = None) -> list[Path]:
    """``grid.predict.predict`` with the top-``k`` ensemble; returns the ``.npy`` paths written."""
    from grid.inputs import NO_SETTINGS, collect
    from grid.predict import default_device, write_predictions

    device = device or default_device()
    members = load_members(experiment_dir, k, device=device, image_size=image_size, tta=tta)
    found = collect(source, explicit=explicit or NO_SETTINGS, experiment=experiment or NO_SETTINGS)
    log.info("inputs: %s; ensemble of %d", found.describe, len(members))
    depths = ((i, depth) for i, depth, _ in ensemble_items(
        members, found.items, found.spec, batch_size=batch_size, device=device, num_workers=num_workers,
        progress=progress))
    return write_predictions(depths, found.items, out, png=png, title_suffix=f" (top-{k} ensemble)")


def evaluate_ensemble(experiment_dir: str | Path, k: int, *, device: str | None = None,
                      batch_size: int = 8, num_workers: int = 0, progress: bool = True) -> dict:
    """Score the top-``k`` ensemble and each member on the experiment's validation split, at
    each target's native resolution; write ``ensemble.json`` and refresh ``leaderboard.md``."""
    from grid.figures import experiment_spec, read_split
    from grid.leaderboard import write_markdown
    from grid.predict import default_device
    from trainables.data import DataError, index_dataset, load_depth
    from trainables.metrics import MetricAccumulator

    experiment_dir = Path(experiment_dir).expanduser()
    info = read_experiment(experiment_dir)
    spec = experiment_spec(info)
    by_name = {it.name: it for it in index_dataset(spec)}
    items = [by_name[v] for v in read_split(experiment_dir, info).val if v in by_name]
    if not items:
        raise DataError(f"{experiment_dir}: no validation item of the split is in {spec.list_path}")
    device = device or default_device()
    members = load_members(experiment_dir, k, device=device)
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
    write_json(experiment_dir / ENSEMBLE_FILE, record)
    write_markdown(read_leaderboard(experiment_dir), experiment_dir)
    return record


def format_ensemble(record: dict) -> str:
    """The ensemble against each of its members, as a Markdown table with a one-line verdict."""
    def cells(metrics: dict) -> str:
        return " | ".join(f"{metrics[name]:.4f}" for name in SHOWN)

    lines = [f"| model | {' | '.join(SHOWN)} |", "|" + "---|" * (len(SHOWN) + 1),
             f"| **top-{record['k']} ensemble** | {cells(record['ensemble'])} |"]
    for m in record["members"]:
        lines.append(f"| {m['arch']} `{m['trial_id']}` ({m['input_size'][0]}x{m['input_size'][1]}) | "
                     f"{cells(m['metrics'])} |")
    best = min(record["members"], key=lambda m: m["metrics"]["si_rmse"])
    gain = best["metrics"]["si_rmse"] - record["ensemble"]["si_rmse"]
    lines.append(f"\nOn {record['images']} validation images the ensemble's si_rmse is "
                 f"{record['ensemble']['si_rmse']:.4f}, {abs(gain):.4f} {'below' if gain >= 0 else 'above'} "
                 f"the best single trial ({best['arch']}, {best['metrics']['si_rmse']:.4f}).")
    return "\n".join(lines)


def ensemble_section(experiment_dir: Path) -> str:
    """The Markdown shown under the leaderboard when ``grid.evaluate --ensemble`` has run."""
    import json

    path = Path(experiment_dir) / ENSEMBLE_FILE
    if not path.is_file():
        return ""
    record = json.loads(path.read_text())
    return (f"\n## Top-{record['k']} ensemble\n\nMean log-depth of the best {record['k']} finished trials, each "
            f"at its own input size, scored with its members on the validation split (`depth-grid "
            f"evaluate --experiment {Path(experiment_dir).name} --ensemble {record['k']}`).\n\n"
            + format_ensemble(record) + "\n")


def evaluate_main(args: argparse.Namespace) -> int:
    """``grid.evaluate --experiment X --ensemble K``: print and record the ensemble's scores."""
    from trainables.data import DataError

    if args.experiment is None:
        print("error: --ensemble needs --experiment (its trials and validation split)", file=sys.stderr)
        return 2
    try:
        record = evaluate_ensemble(args.experiment, args.ensemble, device=getattr(args, "device", None))
    except (DataError, LeaderboardError, ValueError) as e:  # incl. CheckpointError
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_ensemble(record))
    print(f"\nwrote {Path(args.experiment) / ENSEMBLE_FILE} (shown under the table in leaderboard.md)")
    return 0


def submit_ensemble(experiment_dir: str | Path, k: int, data: str | Path, out: str | Path, *,
                    list_file: str = "test_list.txt", npy_dir: str | Path | None = None,
                    image_size: tuple[int, int] | None = None, batch_size: int = 8,
                    device: str | None = None, num_workers: int = 0, progress: bool = True,
                    explicit: DataSettings | None = None, experiment: DataSettings | None = None,
                    tta: bool | None = None) -> Path:
    """``grid.submit.submit`` with the top-``k`` ensemble: the same CSV format and ``.npy`` maps."""
    from grid.inputs import NO_SETTINGS
    from grid.predict import default_device
    from grid.submit import submission_inputs, write_submission

    found, ids = submission_inputs(data, list_file, explicit=explicit or NO_SETTINGS,
                                   experiment=experiment or NO_SETTINGS)
    device = device or default_device()
    members = load_members(experiment_dir, k, device=device, image_size=image_size, tta=tta)
    log.info("inputs: %s; ensemble of %d", found.describe, len(members))
    depths = ((i, depth) for i, depth, _ in ensemble_items(
        members, found.items, found.spec, batch_size=batch_size, device=device, num_workers=num_workers,
        progress=progress))
    return write_submission(depths, found.items, ids, out, npy_dir=npy_dir, source=f"top-{k} ensemble")


def _cli_checks(args: argparse.Namespace) -> None:
    if args.experiment is None:
        raise ValueError("--ensemble needs --experiment (whose best trials form the ensemble)")
    from grid.predict import check_device

    check_device(args.device)


def predict_main(args: argparse.Namespace) -> int:
    """``grid.predict --experiment X --ensemble K``."""
    from grid.predict import settings_from_args

    try:
        _cli_checks(args)
        explicit, experiment = settings_from_args(args)
        paths = predict_ensemble(args.experiment, args.ensemble, args.input, args.out,
                                 image_size=args.image_size, batch_size=args.batch_size, device=args.device,
                                 num_workers=args.workers, png=not args.no_png, explicit=explicit,
                                 experiment=experiment, tta=args.tta)
    except (ValueError, FileNotFoundError, LeaderboardError) as e:  # incl. CheckpointError, DataError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(paths)} depth maps from the top-{args.ensemble} ensemble of {args.experiment} "
          f"written to {args.out}")
    return 0


def submit_main(args: argparse.Namespace) -> int:
    """``grid.submit --experiment X --ensemble K``."""
    from grid.predict import settings_from_args

    try:
        _cli_checks(args)
        explicit, experiment = settings_from_args(args)
        path = submit_ensemble(args.experiment, args.ensemble, args.data, args.out, list_file=args.list,
                               npy_dir=args.npy_dir, image_size=args.image_size, batch_size=args.batch_size,
                               device=args.device, num_workers=args.workers, explicit=explicit,
                               experiment=experiment, tta=args.tta)
    except (ValueError, FileNotFoundError, LeaderboardError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"submission from the top-{args.ensemble} ensemble of {args.experiment} written to {path}")
    return 0
