"""``depth-grid check``: the dataset doctor (``grid.doctor.check_dataset``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from grid.cli._types import CROP_HELP, CropBox, crop_box
from grid.cli.errors import FAILED

SCALE_HELP = "PNG depth: metres = value / S (NYU 8-bit: 25.5, NYU/ScanNet 16-bit: 1000, TUM: 5000)"


def check(
    data: Annotated[str, typer.Option(metavar="DIR|URI", help="dataset folder, or a pack (depth-grid pack): its folder or its s3:// / gs:// URI")],
    format: Annotated[Literal["cil", "pairs"] | None, typer.Option(
        help="default: from the list file present (train_list.txt -> cil, pairs.txt -> pairs)")] = None,
    list_file: Annotated[str | None, typer.Option("--list", help="list file, relative to --data or absolute")] = None,
    depth_scale: Annotated[float | None, typer.Option(help=f"{SCALE_HELP} (default 1; a pack's own)")] = None,
    crop: Annotated[CropBox | None, typer.Option(parser=crop_box, metavar="CROP", help=CROP_HELP)] = None,
    test: Annotated[bool, typer.Option("--test", help="a test list: depth may be absent, read images only")] = False,
    workers: Annotated[int | None, typer.Option(help="reading threads (default: one per core, <= 8)")] = None,
    cache_dir: Annotated[Path, typer.Option(help="node-local cache of a pack's shards (packs/ inside)")] = Path(
        "results/splits"),
) -> None:
    """Read every item of a dataset and report what is wrong.

    Prints counts, image sizes, the depth range and the valid-pixel share, then every bad item
    with its reason. Exit code 0 when every item is fine, 1 when some item is bad, 2 when the
    dataset folder or its list file is unusable.

    \b
    examples:
      depth-grid check --data DIR
      depth-grid check --data nyu/ --depth-scale 25.5 --crop eigen
      depth-grid check --data test/ --list test_list.txt --test
      depth-grid check --data s3://BUCKET/nyu-packed          # a pack: every shard fetched and checked
    """
    from grid.doctor import check_dataset
    from trainables.packed import dataset_spec

    spec = dataset_spec(data, cache_dir, images_only=test, format=format, list_file=list_file, depth_scale=depth_scale,
                        crop=crop)
    if spec.pack is not None:
        spec.pack.fetch()  # every shard fetched and checked: a corrupt one is the pack's error, not its items'
    report = check_dataset(spec, test=test, workers=workers)
    print(report.summary())
    if report.bad:
        raise typer.Exit(FAILED)
