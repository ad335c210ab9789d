"""``depth-grid figures``: an experiment's pictures (``grid.figures.make_figures``)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from grid.cli import _options as o
from grid.cli.errors import FAILED


def figures(
    experiment: Annotated[str, typer.Option(metavar="DIR|URI", help="results/<experiment> folder, or its record in a bucket (gs://BUCKET/PATH/NAME)")],
    n: Annotated[int, typer.Option(min=1, help="validation images in the comparison")] = 4,
    max_models: Annotated[int, typer.Option(min=1, help="architectures in the comparison")] = 6,
    device: o.Device = None,
    overwrite: o.Overwrite = False,
    plugins: o.Plugins = None,
) -> None:
    """Comparison panels, the leaderboard chart and the split's clusters, under EXPERIMENT/figures/.

    comparison.png: validation images as rows, RGB | target | the best trial of each
    architecture. leaderboard.png: best validation si_rmse per architecture with the paper's
    Kaggle scores as reference lines. clusters.png: examples of the split's near-duplicate
    clusters. When the experiment has what they show: audit_pairs.png (evaluation images with a
    near-duplicate in training), data_efficiency.png (si_rmse against training images per
    architecture), pareto.png (si_rmse against cost and inference time, with the Pareto front).
    Exit code 1 when one of the first three could not be drawn (the others are still written). A
    file in figures/ that depth-grid did not write is replaced only with --overwrite.

    \b
    examples:
      depth-grid figures --experiment results/smoke
      depth-grid figures --experiment results/grid1 --n 6 --max-models 4
    """
    from grid.experiment.record import Experiment
    from grid.figures import make_figures
    from grid.inference.predict import check_device

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    check_device(device)
    o.load_plugins(plugins)
    paths = make_figures(Experiment.load(experiment), n=n, max_models=max_models, device=device,
                         overwrite=overwrite)
    for p in paths:
        print(p)
    from grid.figures import FIGURES

    if sum(p.name in FIGURES for p in paths) < len(FIGURES):
        raise typer.Exit(FAILED)
