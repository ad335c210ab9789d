"""``depth-grid predict``: depth maps for images with a trained model
(``grid.inference.predict.predict``, or ``grid.inference.ensemble.predict_ensemble`` with ``--ensemble``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from grid.cli import _options as o


def predict(
    input: Annotated[str, typer.Option("--input", metavar="PATH|URI", help="image folder, image file, list file, or a pack (depth-grid pack): its folder or its s3:// / gs:// URI")],
    out: Annotated[Path, typer.Option(help="output folder")],
    checkpoint: o.Checkpoint = None,
    experiment: o.ExperimentDir = None,
    ensemble: o.Ensemble = None,
    no_png: Annotated[bool, typer.Option("--no-png", help="write only the .npy files")] = False,
    batch_size: o.BatchSize = 8,
    image_size: o.InputSize = None,
    device: o.Device = None,
    workers: o.Workers = 2,
    tta: o.Tta = None,
    crop: o.Crop = None,
    format: o.Format = None,
    overwrite: o.Overwrite = False,
    plugins: o.Plugins = None,
    cache_dir: Annotated[Path, typer.Option(help="with a pack: the node-local cache of its shards (packs/ inside; $DEPTH_GRID_CACHE_DIR overrides it)")] = Path("results/splits"),
) -> None:
    """Depth maps (float32 metres .npy plus a coloured PNG) for images with a trained model.

    The checkpoint carries the architecture and the training input size; each image is resized
    to it, predicted, and its depth resized back to the image's own resolution. With
    --experiment, a list file or data folder in the experiment's layout is read with its crop,
    depth scale and format.

    Nothing is written over a file the command reads (the dataset's images and ground truth, the
    list, the experiment's records, a checkpoint); an existing file depth-grid did not write is
    replaced only with --overwrite. Both are checked before the model loads.

    \b
    examples:
      depth-grid predict --experiment results/smoke --input photos/ --out preds/
      depth-grid predict --checkpoint ckpt/checkpoint.pt --input data/test_list.txt --out preds/
      depth-grid predict --experiment results/grid1 --ensemble 3 --input photos/ --out preds/
      depth-grid predict --experiment s3://BUCKET/results/grid1 --input s3://BUCKET/nyu-packed --out preds/
    """
    from grid.inference.inputs import DataSettings
    from grid.inference.predict import check_device

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    check_device(device)
    o.load_plugins(plugins)
    ckpt, exp = o.source(checkpoint, experiment, ensemble)
    explicit = DataSettings(format=format, crop=crop)
    options = {"image_size": image_size, "batch_size": batch_size, "device": device, "num_workers": workers,
               "png": not no_png, "explicit": explicit, "tta": tta, "overwrite": overwrite, "cache_dir": cache_dir}
    if ensemble is not None:
        from grid.inference.ensemble import predict_ensemble

        paths = predict_ensemble(exp, ensemble, input, out, **options)
        print(f"{len(paths)} depth maps from the top-{ensemble} ensemble of {experiment} written to {out}")
        return
    from grid.inference.predict import predict as predict_images

    paths = predict_images(ckpt, input, out, experiment=exp, **options)
    print(f"{len(paths)} depth maps from {ckpt} written to {out}")
