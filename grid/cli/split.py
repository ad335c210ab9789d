"""``depth-grid split``: the leakage-free train/validation split of a dataset
(``grid.split.compute.compute_split``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from grid.cli._types import CROP_HELP, CropBox, crop_box


def _cosine(value: float) -> float:
    # Checked here, not by compute_split: a usage error must come before torch's import.
    if not 0 < value <= 1:
        raise typer.BadParameter(f"must be a cosine in (0, 1], got {value:g}")
    return value


def _share(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"must be between 0 and 1, got {value:g}")
    return value


def split(
    data: Annotated[Path, typer.Option(help="dataset folder")],
    format: Annotated[Literal["cil", "pairs"] | None, typer.Option(help="default: from the list file present")] = None,
    list_file: Annotated[str | None, typer.Option("--list", help="list file, relative to --data or absolute")] = None,
    depth_scale: Annotated[float, typer.Option(help="PNG depth: metres = value / S")] = 1.0,
    crop: Annotated[CropBox | None, typer.Option(
        parser=crop_box, metavar="CROP", help=f"{CROP_HELP}; applied before embedding")] = None,
    method: Annotated[Literal["paper", "random", "sequence"], typer.Option(
        help="sequence: strict + sequence links; paper: single linkage at --threshold; random: naive")] = "sequence",
    random: Annotated[bool, typer.Option("--random", help="the naive random split (= --method random)")] = False,
    threshold: Annotated[float, typer.Option(
        callback=_cosine, help="cosine similarity that links two images, in (0, 1]")] = 0.9,
    sequence_threshold: Annotated[float, typer.Option(
        callback=_cosine, help="cosine that links images at most --sequence-window places apart")] = 0.8,
    sequence_window: Annotated[int, typer.Option(min=1, help="places apart in list or name order")] = 1,
    val_fraction: Annotated[float, typer.Option(callback=_share, help="validation share, in (0, 1)")] = 0.2,
    seed: Annotated[int, typer.Option(help="ranks equal-sized clusters")] = 0,
    out: Annotated[Path | None, typer.Option(help="also write the split JSON here")] = None,
    figure: Annotated[Path | None, typer.Option(help="PNG of the largest clusters")] = None,
    cache_dir: Annotated[Path, typer.Option(help="where splits and embeddings are cached")] = Path("results/splits"),
    no_cache: Annotated[bool, typer.Option("--no-cache", help="neither read nor write any cache")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="images per embedding batch")] = 32,
    device: Annotated[str | None, typer.Option(help="e.g. cpu, cuda (default: cuda when available)")] = None,
) -> None:
    """Compute the leakage-free train/validation split of a dataset: near-duplicate images never
    straddle the two sides.

    \b
    examples:
      depth-grid split --data DIR
      depth-grid split --data DIR --method paper    # the paper's rule: single linkage at 0.9
      depth-grid split --data DIR --random          # the naive split, same report, for comparison
    """
    from trainables.data import DatasetSpec, index_dataset

    # The folder and its list first: a mistake there must not wait for torch's import.
    spec = DatasetSpec.detect(data, format, list_file=list_file, depth_scale=depth_scale, crop=crop)
    items = index_dataset(spec, require_depth=False)

    from grid.split.compute import cache_path, compute_split
    from grid.split.report import cluster_figure, format_report

    cache = None if no_cache else cache_dir.resolve()
    result = compute_split(
        spec, items, method="random" if random else method, threshold=threshold,
        sequence_threshold=sequence_threshold, sequence_window=sequence_window, val_fraction=val_fraction,
        seed=seed, cache_dir=cache, batch_size=batch_size, device=device)
    print(format_report(result.report, result.params))
    if out is not None:
        print(f"split written to {result.to_json(out)}")
    if cache is not None:
        print(f"split cached at {cache_path(cache, result.fingerprint, result.params)}")
    if figure is not None:
        print(f"figure written to {cluster_figure(figure, items, spec, result.cluster_of, set(result.val))}")
