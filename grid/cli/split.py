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
    data: Annotated[str, typer.Option(metavar="DIR|URI", help="dataset folder, or a pack (depth-grid pack): its folder or its s3:// / gs:// URI")],
    format: Annotated[Literal["cil", "pairs"] | None, typer.Option(help="default: from the list file present")] = None,
    list_file: Annotated[str | None, typer.Option("--list", help="list file, relative to --data or absolute")] = None,
    depth_scale: Annotated[float | None, typer.Option(help="PNG depth: metres = value / S (default 1; a pack's own)")] = None,
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
    figure: Annotated[Path | None, typer.Option(help="PNG of the largest clusters (with --against: of the closest pairs)")] = None,
    cache_dir: Annotated[Path, typer.Option(help="where splits and embeddings are cached (and a pack's shards, under packs/)")] = Path("results/splits"),
    no_cache: Annotated[bool, typer.Option("--no-cache", help="neither read nor write any cache")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="images per embedding batch")] = 32,
    device: Annotated[str | None, typer.Option(help="e.g. cpu, cuda (default: cuda when available)")] = None,
    against: Annotated[list[str] | None, typer.Option(
        "--against", metavar="NAME=DIR[:KEY=VALUE,...]",
        help="audit this evaluation set against all of --data instead of splitting (repeatable; keys "
             "as for depth-grid run --eval-data: format, list, depth_scale, crop)")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", metavar="FILE", help="with --against: write the audit here as JSON")] = None,
) -> None:
    """Compute the leakage-free train/validation split of a dataset: near-duplicate images never
    straddle the two sides.

    \b
    examples:
      depth-grid split --data DIR
      depth-grid split --data DIR --method paper    # the paper's rule: single linkage at 0.9
      depth-grid split --data DIR --random          # the naive split, same report, for comparison
      depth-grid split --data DIR --against tum=/data/tum --json audit.json   # near-duplicates of DIR in tum
    """
    from trainables.data import index_dataset
    from trainables.packed import dataset_spec

    # The folder and its list first: a mistake there must not wait for torch's import.
    spec = dataset_spec(data, cache_dir, format=format, list_file=list_file, depth_scale=depth_scale, crop=crop)
    items = index_dataset(spec, require_depth=False)
    if against:
        _audit(spec, items, against, threshold=threshold, json_out=json_out, figure=figure, out=out,
               cache=None if no_cache else cache_dir.resolve(), batch_size=batch_size, device=device,
               cache_dir=cache_dir)
        return
    if json_out is not None:
        raise typer.BadParameter("goes with --against NAME=DIR (it writes the audit)", param_hint="--json")

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


def _against_sets(texts: list[str], cache_dir: Path) -> list:
    """``--against`` values as ``AuditSet``s, each folder and list read (RGB files only)."""
    from grid.experiment.eval_data import parse_eval_data
    from grid.split.audit import AuditSet
    from trainables.config import ConfigError
    from trainables.data import DataError, index_dataset

    sets, names = [], set()
    for text in texts:
        try:
            parsed = parse_eval_data(text)
        except ConfigError as e:  # the same syntax as --eval-data: name the option given here
            raise ConfigError(str(e).replace("--eval-data", "--against", 1)) from None
        if parsed.name in names:
            raise ConfigError(f"--against: name {parsed.name!r} given more than once")
        names.add(parsed.name)
        try:
            set_spec = parsed.dataset_spec(cache_dir, images_only=True)  # a folder, or a pack (a test pack too)
            sets.append(AuditSet(parsed.name, set_spec, index_dataset(set_spec, require_depth=False)))
        except DataError as e:
            raise DataError(f"--against {parsed.name}: {e}") from None
    return sets


def _audit(spec, items: list, against: list[str], *, threshold: float, json_out: Path | None,
           figure: Path | None, out: Path | None, cache: Path | None, batch_size: int,
           device: str | None, cache_dir: Path) -> None:
    """``--against``: the leakage audit of each set against all of ``--data`` (no split)."""
    if out is not None:
        raise typer.BadParameter("writes a split; with --against the command only audits (use --json)",
                                 param_hint="--out")
    sets = _against_sets(against, cache_dir)

    from grid.split.audit import audit, format_audit
    from trainables.io import write_json

    result = audit(items, spec, sets, threshold=threshold, cache_dir=cache, batch_size=batch_size,
                   device=device)
    print(f"leakage audit against {len(items)} images of {spec.root}")
    print(format_audit(result, threshold))
    if json_out is not None:
        write_json(json_out, result)
        print(f"audit written to {json_out}")
    if figure is not None and not any(found["pairs"] for found in result.values()):
        print(f"no near-duplicates: {figure} not drawn")
    elif figure is not None:
        from grid.figures import pairs_figure

        found = [(s.name, s.spec, spec, result[s.name]["pairs"]) for s in sets]
        print(f"figure written to {pairs_figure(figure, found)}")
