"""``depth-grid evaluate``: score a folder of depth predictions against ground truth
(``grid.inference.evaluate.evaluate``), or an experiment's top-K ensemble on its validation split
(``grid.inference.ensemble.evaluate_ensemble``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from grid.cli import _options as o


def evaluate(
    ctx: typer.Context,
    pred: Annotated[Path | None, typer.Option(help="folder of prediction .npy files (metres)")] = None,
    data: Annotated[str | None, typer.Option(metavar="DIR|URI", help="dataset folder with the ground truth, or a pack (depth-grid pack): its folder or its s3:// / gs:// URI")] = None,
    format: Annotated[Literal["cil", "pairs", "kitti"] | None, typer.Option(
        help="dataset layout (default: detected; kitti: its own folder structure, depth PNG / 256)")] = None,
    list_file: Annotated[str | None, typer.Option("--list", help="list file, relative to --data or absolute")] = None,
    depth_scale: Annotated[float | None, typer.Option(
        help="PNG depth only: metres = value / S (NYU 8-bit: 25.5, 16-bit mm: 1000; default: the "
             "experiment's, else 1)")] = None,
    crop: Annotated[Literal["eigen", "none"] | None, typer.Option(
        help="score only the Eigen crop of 480x640 frames (rows 45:471, cols 41:601; default: the "
             "experiment's, else none)")] = None,
    experiment: Annotated[str | None, typer.Option(
        metavar="DIR|URI", help="read the data as this experiment did (format, crop, depth scale); a folder or "
                                "its record in a bucket (gs://BUCKET/PATH/NAME)")] = None,
    protocol: Annotated[str | None, typer.Option(
        metavar="none|nyu|kitti_eigen|kitti_garg",
        help="evaluation protocol: nyu = Eigen crop of 480x640 frames, ground truth 1e-3..10 m, predictions clipped "
             "to it; kitti_eigen / kitti_garg = their crops, 1e-3..80 m (docs/metrics.md; default: the "
             "experiment's, else none)")] = None,
    align: Annotated[Literal["none", "median", "lstsq"], typer.Option(
        help="per-image alignment for relative-depth predictions: median scaling or least-squares scale and "
             "shift")] = "none",
    align_space: Annotated[Literal["depth", "inverse", "log"], typer.Option(
        help="the space --align lstsq fits in: depth (metres), inverse (disparity, as MiDaS) or log")] = "depth",
    mean: Annotated[Literal["image", "pooled"], typer.Option(
        help="average each metric per image (as the papers' toolboxes) or compute it once over all pixels "
             "pooled")] = "image",
    resize: Annotated[bool, typer.Option("--resize", help="bilinearly resize predictions to the target size "
                                                          "instead of failing")] = False,
    json: Annotated[Path | None, typer.Option("--json", help="also write the metrics to this JSON file")] = None,
    overwrite: o.Overwrite = False,
    ensemble: Annotated[int | None, typer.Option(
        min=1, metavar="K", help="with --experiment alone: score the mean log-depth of its best K finished trials on "
                          "its validation split, against each of them")] = None,
    device: o.Device = None,
    plugins: o.Plugins = None,
    cache_dir: Annotated[Path, typer.Option(help="with a pack: the node-local cache of its shards (packs/ inside; $DEPTH_GRID_CACHE_DIR overrides it)")] = Path("results/splits"),
) -> None:
    """Score a folder of depth predictions against a dataset's ground truth.

    Reads one float .npy per list item, in metres, at PRED/<depth entry with suffix .npy>, and
    prints every metric averaged per image (--mean pooled: over all pixels), under --protocol.
    Missing, extra, corrupt or wrongly sized predictions are reported all at once, naming the
    items, and the exit code is 1.

    \b
    examples:
      depth-grid evaluate --pred preds/ --data DIR
      depth-grid evaluate --pred preds/ --data nyu/ --experiment results/nyu
      depth-grid evaluate --pred preds/ --data nyu_test/ --format pairs --depth-scale 1000 --protocol nyu
      depth-grid evaluate --pred preds/ --data kitti/ --protocol kitti_garg --align median
      depth-grid evaluate --experiment results/grid1 --ensemble 3
      depth-grid evaluate --pred preds/ --data s3://BUCKET/nyu-packed --cache-dir /mnt/ssd/cache
    """
    from grid.experiment.record import Experiment
    from trainables.protocols import get_protocol

    if protocol is not None:
        get_protocol(protocol)  # an unknown name: said before anything is read
    exp = Experiment.load(experiment) if experiment is not None else None
    if ensemble is not None:
        _ensemble(exp, ensemble, device, plugins)
        return
    if pred is None or data is None:
        from grid.cli.errors import UsageError

        raise UsageError("--pred and --data are required (or --experiment with --ensemble K)", ctx)
    from grid.inference.evaluate import evaluate as score
    from grid.inference.evaluate import experiment_protocol, format_table
    from grid.inference.inputs import DataSettings, pack_inputs, with_settings
    from trainables.data import DatasetSpec
    from trainables.packed import is_pack

    given = DataSettings(format=format, crop=crop, depth_scale=depth_scale)
    if is_pack(data):  # its own layout; a flag that disagrees is refused
        found = pack_inputs(data, explicit=given, experiment=DataSettings.of(exp), cache_dir=cache_dir,
                            list_file=list_file, require_depth=True)
        spec, described = found.spec, found.describe
    else:
        spec = DatasetSpec.detect(data, format, list_file=list_file)
        spec, applied = with_settings(spec, given, DataSettings.of(exp))
        described = f"{spec.format} list {spec.list_path}; {applied}"
    if protocol is None and DataSettings.of(exp).format in (None, spec.format):  # as the crop: the same layout
        protocol = experiment_protocol(exp)
    protocol = protocol or "none"
    result = score(pred, spec, resize=resize, out=json, overwrite=overwrite, experiment=exp, protocol=protocol,
                   align=align, align_space=align_space, mean=mean)
    print(f"ground truth: {described}")
    print(format_table(result))
    if json is not None:
        print(f"wrote {json}")


def _ensemble(exp, k: int, device: str | None, plugins: list[str] | None) -> None:
    if exp is None:
        raise ValueError("--ensemble needs --experiment (its trials and validation split)")
    from grid.experiment.leaderboard import ENSEMBLE_FILE, format_ensemble
    from grid.inference.ensemble import evaluate_ensemble
    from grid.inference.predict import check_device

    check_device(device)
    o.load_plugins(plugins)
    record = evaluate_ensemble(exp, k, device=device)
    print(format_ensemble(record))
    print(f"\nwrote {exp / ENSEMBLE_FILE} (shown under the table in leaderboard.md)")
