"""``depth-grid pack``: a dataset as tar shards plus a manifest (``grid.experiment.pack.pack_dataset``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from grid.cli._types import CROP_HELP, CropBox, crop_box


def pack(
    data: Annotated[Path, typer.Option(help="dataset folder (its list file and the files it names)")],
    out: Annotated[str, typer.Option(metavar="DIR|URI", help="a new or empty folder, or s3://BUCKET/PREFIX, "
                                     "gs://BUCKET/PREFIX (S3-compatible stores: set AWS_ENDPOINT_URL)")],
    format: Annotated[Literal["cil", "pairs"] | None, typer.Option(help="default: from the list file present")] = None,
    list_file: Annotated[str | None, typer.Option("--list", help="list file, relative to --data or absolute")] = None,
    depth_scale: Annotated[float, typer.Option(help="PNG depth: metres = value / S (recorded in the pack)")] = 1.0,
    crop: Annotated[CropBox | None, typer.Option(
        parser=crop_box, metavar="CROP", help=f"{CROP_HELP}; recorded, applied when read")] = None,
    shard_mb: Annotated[float, typer.Option(min=0.001, help="shard size in MiB (a shard holds at least one item)")] = 256,
    workers: Annotated[int | None, typer.Option(help="threads checking the items (default: one per core, <= 8)")] = None,
    depth: Annotated[Literal["exact", "mm16"], typer.Option(help="how .npy depth (float32 metres) is stored: exact bytes, or mm16: whole millimetres, zstd-compressed (at most 0.5 mm off, about a twentieth of the bytes)")] = "exact",
) -> None:
    """Pack a dataset into tar shards and a manifest, for `--data DIR|URI` of run, check, split,
    submit and evaluate, `--eval-data NAME=URI` and `predict --input URI`.

    Every item is read and checked first (as `depth-grid check` does): a bad item stops the pack
    before anything is written. RGB keeps its files' exact bytes, and so does depth (error: 0 m)
    unless --depth mm16 stores .npy depth as 16-bit millimetres (error at most 0.0005 m).
    The layout settings (format, list, depth scale, crop) are recorded in the manifest, which
    is written last. A test list (no depth files) packs its images only, for predict and submit.

    \b
    examples:
      depth-grid pack --data data/train --out data/train-packed
      AWS_ENDPOINT_URL=http://minio:9000 depth-grid pack --data nyu/ --depth-scale 25.5 --crop eigen \\
          --out s3://bucket/nyu-packed
    """
    from grid.experiment.pack import pack_dataset
    from trainables.data import DatasetSpec

    spec = DatasetSpec.detect(data, format, list_file=list_file, depth_scale=depth_scale, crop=crop)
    print(pack_dataset(spec, out, shard_mb=shard_mb, workers=workers, depth=depth).line())
