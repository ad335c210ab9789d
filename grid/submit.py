"""A competition submission from a trained model: ``submission.csv`` plus the ``.npy`` maps.

    python -m grid.submit --experiment results/grid1 --data data/ --out results/submission.csv

Format (the ETH CIL monocular-depth Kaggle competition's ``create_prediction_csv``): columns
``id,Depths``; ``id`` is the test list's depth file name without extension; ``Depths`` is the
depth map flattened row-major, clamped to >= 0.01 m (so no zero reaches the log), rounded and
written with two decimals, comma-joined, zlib-compressed (level 9) and base64-encoded. Rows
follow the test list's order.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import sys
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from grid.cli import prog_name
from grid.inputs import NO_SETTINGS, DataSettings, Inputs, dataset_inputs
from grid.leaderboard import LeaderboardError
from grid.predict import (
    add_model_args,
    default_device,
    input_size,
    load_checkpoint_model,
    model_from_args,
    predict_items,
    save_depth,
    settings_from_args,
    use_tta,
)
from trainables.data import DataError, Item
from trainables.io import atomic_write

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
           list_file: str = "test_list.txt", npy_dir: str | Path | None = None,
           image_size: tuple[int, int] | None = None, batch_size: int = 8,
           device: str | None = None, num_workers: int = 0, progress: bool = True,
           fallback_size: tuple[int, int] | None = None, explicit: DataSettings = NO_SETTINGS,
           experiment: DataSettings = NO_SETTINGS, tta: bool | None = None) -> Path:
    """Predict the test list and write the submission CSV (atomically) and the ``.npy`` maps.

    Args:
        checkpoint: a trial's ``checkpoint.pt``.
        data: the test data folder (``test_list.txt`` beside the images or beside ``test/``).
        out: the CSV to write.
        list_file: the test list, relative to ``data`` or absolute.
        npy_dir: where the maps named by the list go (default: the CSV's folder).
        explicit, experiment: data settings given as flags / recorded by the experiment: a
            test list in the experiment's layout is read with its crop (``grid.inputs``).
        tta: flip test-time averaging; ``None``: as the trial validated (its ``tta`` setting).
    """
    found, ids = submission_inputs(data, list_file, explicit=explicit, experiment=experiment)
    device = device or default_device()
    model, info = load_checkpoint_model(checkpoint, device)
    size = input_size(info, image_size, fallback_size)
    log.info("inputs: %s; model input %dx%d", found.describe, *size)
    depths = predict_items(model, found.items, found.spec, image_size=size, batch_size=batch_size,
                           device=device, num_workers=num_workers, progress=progress, tta=use_tta(info, tta))
    return write_submission(depths, found.items, ids, out, npy_dir=npy_dir, source=checkpoint)


def submission_inputs(data: str | Path, list_file: str = "test_list.txt", *, explicit: DataSettings = NO_SETTINGS,
                experiment: DataSettings = NO_SETTINGS) -> tuple[Inputs, list[str]]:
    """The test list's items (with the experiment's settings when in its layout) and their ids."""
    list_path = Path(data).expanduser().resolve() / list_file  # an absolute list_file stays itself
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
    for i, depth in depths:
        if not np.isfinite(depth).all():
            raise DataError(f"{items[i].rgb}: the model predicted non-finite depth ({source})")
        save_depth(depth, npy_dir / items[i].pred_name)
        cells[i] = encode_depth(depth)
    with atomic_write(out) as fh:
        fh.write(HEADER + "\n")
        for ident, cell in zip(ids, cells, strict=True):
            fh.write(f"{ident},{cell}\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog_name("python -m grid.submit"), description=__doc__.split("\n")[0])
    add_model_args(parser)
    parser.add_argument("--data", required=True, type=Path, help="test data folder")
    parser.add_argument("--list", default="test_list.txt", help="test list (default: test_list.txt)")
    parser.add_argument("--out", required=True, type=Path, help="submission CSV to write")
    parser.add_argument("--npy-dir", type=Path, default=None,
                        help="where the test list's .npy maps go (default: beside the CSV)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.ensemble:
        from grid.ensemble import submit_main

        return submit_main(args)
    try:
        ckpt, fallback = model_from_args(args)
        explicit, experiment = settings_from_args(args)
        path = submit(ckpt, args.data, args.out, list_file=args.list, npy_dir=args.npy_dir,
                      image_size=args.image_size, batch_size=args.batch_size, device=args.device,
                      num_workers=args.workers, fallback_size=fallback, explicit=explicit,
                      experiment=experiment, tta=args.tta)
    except (ValueError, FileNotFoundError, LeaderboardError) as e:  # incl. CheckpointError, DataError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"submission from {ckpt} written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
