"""``depth-grid submit``: a competition submission CSV from a trained model
(``grid.inference.submit.submit``, or ``grid.inference.ensemble.submit_ensemble`` with ``--ensemble``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from grid.cli import _options as o


def submit(
    data: Annotated[str, typer.Option(metavar="DIR|URI", help="test data folder, or a pack (depth-grid pack): its folder or its s3:// / gs:// URI")],
    out: Annotated[Path, typer.Option(help="submission CSV to write")],
    checkpoint: o.Checkpoint = None,
    experiment: o.ExperimentDir = None,
    ensemble: o.Ensemble = None,
    list_file: Annotated[str | None, typer.Option("--list", help="test list, relative to --data or absolute (default: test_list.txt; a pack's own)")] = None,
    npy_dir: Annotated[Path | None, typer.Option(help="where the test list's .npy maps go (default: beside the CSV)")] = None,
    batch_size: o.BatchSize = 8,
    image_size: o.InputSize = None,
    device: o.Device = None,
    workers: o.Workers = 2,
    tta: o.Tta = None,
    crop: o.Crop = None,
    format: o.Format = None,
    overwrite: o.Overwrite = False,
    audit: Annotated[bool, typer.Option("--audit/--no-audit", help="with --experiment: count the test images that have a near-duplicate among its training images (the split's MobileNet embeddings and threshold) and warn")] = True,
    plugins: o.Plugins = None,
    cache_dir: Annotated[Path, typer.Option(help="with a pack: the node-local cache of its shards (packs/ inside; $DEPTH_GRID_CACHE_DIR overrides it)")] = Path("results/splits"),
) -> None:
    """A competition submission CSV (id,Depths; the competition's encoding) and the .npy maps.

    Nothing is written over a file the command reads (the dataset's images and ground truth, the
    list, the experiment's records, a checkpoint); an existing file depth-grid did not write is
    replaced only with --overwrite. Both are checked before the model loads.

    \b
    examples:
      depth-grid submit --experiment results/grid1 --data data/ --out results/submission.csv
      depth-grid submit --experiment results/grid1 --ensemble 3 --data data/ --out sub.csv
    """
    from grid.inference.inputs import DataSettings
    from grid.inference.predict import check_device

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    check_device(device)
    o.load_plugins(plugins)
    ckpt, exp = o.source(checkpoint, experiment, ensemble)
    options = {"list_file": list_file, "npy_dir": npy_dir, "image_size": image_size, "batch_size": batch_size,
               "device": device, "num_workers": workers, "explicit": DataSettings(format=format, crop=crop),
               "tta": tta, "overwrite": overwrite, "cache_dir": cache_dir}
    if ensemble is not None:
        from grid.inference.ensemble import submit_ensemble

        path = submit_ensemble(exp, ensemble, data, out, **options)
        print(f"submission from the top-{ensemble} ensemble of {experiment} written to {path}")
    else:
        from grid.inference.submit import submit as write

        path = write(ckpt, data, out, experiment=exp, **options)
        print(f"submission from {ckpt} written to {path}")
    if exp is not None and audit:
        from grid.inference.submit import audit_test_list

        for line in audit_test_list(exp, data, list_file, device=device, cache_dir=cache_dir):
            print(line)
