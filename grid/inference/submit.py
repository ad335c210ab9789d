"""A competition submission from a trained model: ``submission.csv`` plus the ``.npy`` maps.

    depth-grid submit --experiment results/grid1 --data data/ --out results/submission.csv

Format (the ETH CIL monocular-depth Kaggle competition's ``create_prediction_csv``): columns
``id,Depths``; ``id`` is the test list's depth file name without extension; ``Depths`` is the
depth map flattened row-major, clamped to >= 0.01 m (so no zero reaches the log), rounded and
written with two decimals, comma-joined, zlib-compressed (level 9) and base64-encoded. Rows
follow the test list's order.
"""

from __future__ import annotations

import base64
import binascii
import logging
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grid.inference.checkpoints import checkpoint_file
from grid.inference.inputs import (
    NO_SETTINGS,
    DataSettings,
    Inputs,
    dataset_inputs,
    pack_inputs,
)
from grid.inference.outputs import Reads, check_folder, check_outputs, recorded
from grid.inference.predict import checkpoint_depths, save_depth
from trainables.data import DataError, Item
from trainables.io import atomic_write
from trainables.packed import is_pack

if TYPE_CHECKING:
    from grid.experiment.record import Experiment

log = logging.getLogger(__name__)
MIN_DEPTH = 0.01
HEADER = "id,Depths"


def encode_depth(depth: np.ndarray) -> str:
    """One ``Depths`` cell: clamp >= 0.01, round to 2 decimals, join, zlib level 9, base64."""
    values = np.round(np.maximum(np.asarray(depth, dtype=np.float64).ravel(), MIN_DEPTH), 2)
    text = ",".join(f"{v:.2f}" for v in values.tolist())
    return base64.b64encode(zlib.compress(text.encode("ascii"), level=9)).decode("ascii")


def decode_row(cell: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Inverse of ``encode_depth``: base64 -> zlib -> floats (1-D, or reshaped to ``shape``)."""
    try:
        text = zlib.decompress(base64.b64decode(cell, validate=True)).decode("ascii")
        values = np.array(text.split(","), dtype=np.float64)
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"not a valid Depths cell ({e})") from e
    return values.reshape(shape) if shape is not None else values


def read_submission(path: str | Path) -> list[tuple[str, str]]:
    """``(id, Depths)`` rows of a submission CSV, in file order."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise DataError(f"{path}: not a submission (first line must be {HEADER!r})")
    rows = []
    for n, line in enumerate(lines[1:], 2):
        ident, sep, cell = line.partition(",")
        if not sep:
            raise DataError(f"{path}:{n}: expected 'id,Depths'")
        rows.append((ident, cell))
    return rows


def submission_id(item: Item) -> str:
    """The depth entry's file name without extension, e.g. ``sample_000123_depth``."""
    return Path(item.depth_rel).stem


def _check_ids(items: list[Item], list_path: Path) -> list[str]:
    ids, seen = [], {}
    for item in items:
        ident = submission_id(item)
        if "," in ident or '"' in ident:
            raise DataError(f"{list_path}: id {ident!r} would break the CSV (comma or quote)")
        if ident in seen:
            raise DataError(f"{list_path}: depth entries {seen[ident]!r} and {item.depth_rel!r} "
                            f"give the same submission id {ident!r}")
        seen[ident] = item.depth_rel
        ids.append(ident)
    return ids


def submit(checkpoint: str | Path, data: str | Path, out: str | Path, *,
           list_file: str | None = None, npy_dir: str | Path | None = None,
           image_size: tuple[int, int] | None = None, batch_size: int = 8,
           device: str | None = None, num_workers: int = 0, progress: bool = True,
           experiment: Experiment | None = None, explicit: DataSettings = NO_SETTINGS,
           tta: bool | None = None, overwrite: bool = False, cache_dir: str | Path | None = None) -> Path:
    """Predict the test list and write the submission CSV (atomically) and the ``.npy`` maps.

    The test list is read and every output checked (``grid.inference.outputs``: never over an
    input, a foreign file only with ``overwrite``) before the model loads.

    Args:
        checkpoint: a trial's ``checkpoint.pt``.
        data: the test data folder (``test_list.txt`` beside the images or beside ``test/``), or
            a pack (its folder or URI: its own list, read through the cache at ``cache_dir``).
        out: the CSV to write.
        list_file: the test list, relative to ``data`` or absolute (default ``test_list.txt``;
            a pack's own list).
        npy_dir: where the maps named by the list go (default: the CSV's folder).
        experiment: the checkpoint's experiment, if any: its input size stands in for a
            checkpoint that records none, and a test list in its layout is read with its crop.
        explicit: data settings given as flags; they override the experiment's (``grid.inference.inputs``).
        tta: flip test-time averaging; ``None``: as the trial validated (its ``tta`` setting).
        overwrite: replace existing files depth-grid did not write (never one it reads).
    """
    checkpoint = checkpoint_file(checkpoint)
    found, ids = submission_inputs(data, list_file, explicit=explicit, experiment=DataSettings.of(experiment),
                                   cache_dir=cache_dir)
    reads = Reads().add_inputs(found).add_experiment(experiment).add_checkpoints([checkpoint])
    submission_outputs(found.items, out, npy_dir=npy_dir, reads=reads, overwrite=overwrite)
    depths = checkpoint_depths(checkpoint, found, experiment=experiment, image_size=image_size,
                               batch_size=batch_size, device=device, num_workers=num_workers, progress=progress,
                               tta=tta)
    return write_submission(depths, found.items, ids, out, npy_dir=npy_dir, source=checkpoint)


def audit_test_list(experiment: Experiment, data: str | Path, list_file: str | None = None, *,
                    device: str | None = None, cache_dir: str | Path | None = None) -> list[str]:
    """The leakage audit of a test list against the experiment's training images
    (``grid.split.audit``, at its split's threshold; embeddings cached beside the experiment's
    split cache): a warning line when some test image has a near-duplicate there, else none."""
    from grid.split.audit import AuditSet, audit

    found, _ = submission_inputs(data, list_file, experiment=DataSettings.of(experiment), cache_dir=cache_dir)
    threshold = float(experiment.split.params.get("threshold", 0.9))
    cache = experiment.path.parent / "splits"
    result = audit(experiment.training_items(), experiment.spec, [AuditSet("test", found.spec, found.items)],
                   threshold=threshold, cache_dir=cache if cache.is_dir() else None, device=device)["test"]
    if not result["near_duplicates"]:
        return []
    test_item, train_item, cos = result["pairs"][0]
    where = found.spec.pack.uri if found.spec.pack is not None else found.spec.list_path
    return [f"warning: {result['near_duplicates']} of {len(found.items)} test image(s) in {where} have a "
            f"near-duplicate among {experiment.name}'s training images (cosine >= {threshold:g}; closest: "
            f"{test_item} ~ {train_item}, {cos:.4f})"]


def submission_outputs(items: list[Item], out: str | Path, *, npy_dir: str | Path | None = None,
                       reads: Reads | None = None, overwrite: bool = False) -> list[Path]:
    """The CSV and the ``.npy`` maps a submission writes, checked by the output rule before any
    work (``grid.inference.outputs``)."""
    csv = check_outputs([out], reads, overwrite=overwrite)
    if npy_dir is not None:
        folder = check_folder(npy_dir, option="--npy-dir")
        return [*csv, *check_outputs((folder / it.pred_name for it in items), reads, overwrite=overwrite,
                                     option="--npy-dir")]
    advice = "give --npy-dir elsewhere"  # the maps go beside the CSV unless --npy-dir is given
    folder = check_folder(csv[0].parent, option="the folder of --out", advice=advice)
    return [*csv, *check_outputs((folder / it.pred_name for it in items), reads, overwrite=overwrite,
                                 option="a map beside --out", advice=advice)]


def submission_inputs(data: str | Path, list_file: str | None = None, *, explicit: DataSettings = NO_SETTINGS,
                      experiment: DataSettings = NO_SETTINGS,
                      cache_dir: str | Path | None = None) -> tuple[Inputs, list[str]]:
    """The test list's items (with the experiment's settings when in its layout; a pack's with
    its own) and their ids."""
    if is_pack(data):
        found = pack_inputs(data, explicit=explicit, experiment=experiment, cache_dir=cache_dir, list_file=list_file)
        return found, _check_ids(found.items, found.spec.list_path)
    list_path = Path(data).expanduser().resolve() / (list_file or "test_list.txt")  # an absolute one stays itself
    if not list_path.is_file():
        raise DataError(f"{list_path}: test list not found")
    found = dataset_inputs(list_path, explicit=explicit, experiment=experiment)
    return found, _check_ids(found.items, found.spec.list_path)


def write_submission(depths: Iterable[tuple[int, np.ndarray]], items: list[Item], ids: list[str],
                     out: str | Path, *, npy_dir: str | Path | None = None, source: object = "") -> Path:
    """Write each ``(index, depth)``'s ``.npy`` (default: beside the CSV) and the CSV, atomically,
    rows in list order whatever order the depths come in; ``source`` names the model in errors."""
    out = Path(out).expanduser()
    npy_dir = Path(npy_dir).expanduser() if npy_dir is not None else out.parent
    cells: list[str | None] = [None] * len(items)
    with recorded() as files:  # depth-grid's own outputs: a re-run may replace them
        for i, depth in depths:
            if not np.isfinite(depth).all():
                raise DataError(f"{items[i].rgb}: the model predicted non-finite depth ({source})")
            save_depth(depth, npy_dir / items[i].pred_name)
            files.append(npy_dir / items[i].pred_name)
            cells[i] = encode_depth(depth)
        with atomic_write(out) as fh:
            fh.write(HEADER + "\n")
            for ident, cell in zip(ids, cells, strict=True):
                fh.write(f"{ident},{cell}\n")
        files.append(out)
    return out
