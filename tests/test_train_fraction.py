"""``train_fraction`` (``trainables.subset``): whole split clusters, exact to one cluster, nested
across fractions; and one real grid (two fractions x two seeds, with an ``--eval-data`` set that
holds copies of training images) whose leaderboard counts the training images, whose leakage
audit finds the copies, and whose data-efficiency figure shows both fractions."""

from __future__ import annotations

import collections
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grid.figures
from grid.cli.run import parse_args
from grid.experiment.prepare import prepare_bundle
from grid.experiment.record import Experiment
from grid.experiment.run import run
from grid.figures import audit_figure, data_efficiency_figure, pareto_figure
from grid.synth import generate
from trainables.config import ConfigError, TrialConfig
from trainables.data import DatasetSpec
from trainables.loop import make_loaders
from trainables.subset import cluster_subset, train_subset


def _clusters(seed: int = 0, n_clusters: int = 60) -> list[int]:
    """Cluster ids of a shuffled list: sizes 1 to 9, ids not in list order."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(rng.permutation(n_clusters), rng.integers(1, 10, n_clusters))
    return rng.permutation(ids).tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.5, 0.9])
def test_a_subset_keeps_whole_clusters_and_is_exact_to_one_cluster(fraction, seed):
    clusters = _clusters(seed)
    kept = cluster_subset(clusters, fraction, seed)
    sizes = collections.Counter(clusters)
    kept_sizes = collections.Counter(clusters[i] for i in kept)
    assert kept_sizes and all(kept_sizes[c] == sizes[c] for c in kept_sizes)  # never half a cluster
    assert kept == sorted(set(kept))
    target = fraction * len(clusters)
    # at or above the target, by less than one cluster; and one cluster fewer would be below it
    assert target <= len(kept) < target + max(sizes.values())
    assert len(kept) - max(kept_sizes.values()) < target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fractions_are_nested_at_one_seed(seed):
    clusters = _clusters(seed)
    subsets = [set(cluster_subset(clusters, f, seed)) for f in (0.05, 0.1, 0.25, 0.5, 1.0)]
    assert all(a <= b for a, b in zip(subsets, subsets[1:], strict=False))
    assert subsets[-1] == set(range(len(clusters)))
    assert set(cluster_subset(clusters, 0.25, seed)) != set(cluster_subset(clusters, 0.25, seed + 10))


def test_train_subset_and_the_trial_setting():
    items = [f"img{i}" for i in range(10)]
    assert train_subset(items, (), 1.0, 0) == items
    assert len(train_subset(items, (), 0.3, 0)) == 3  # no clusters given: each item its own
    assert set(train_subset(items, [0] * 5 + [1] * 5, 0.3, 0)) in ({*items[:5]}, {*items[5:]})
    with pytest.raises(ValueError, match="10 training items but 2 cluster ids"):
        train_subset(items, [0, 1], 0.5, 0)
    assert TrialConfig(arch="unet").train_fraction == 1.0
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="train_fraction"):
            TrialConfig(arch="unet", train_fraction=bad)


# ---- a real grid ------------------------------------------------------------------------------

SPACE = '''
"""Two fractions x two seeds of a tiny U-Net, every training image every epoch."""
from ray import tune

DESCRIPTION = "train_fraction test"
ARCHS = ["unet"]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}


def space(archs=None):
    return {"arch": tune.grid_search(list(archs or ARCHS)), "model_kwargs": {"size": "tiny"},
            "train_fraction": tune.grid_search([0.5, 1.0]), "seed": tune.grid_search([0, 1]),
            "epochs": 1, "batch_size": 2, "accum_steps": 1, "image_size": [32, 48], "max_steps_per_epoch": 0,
            "max_val_images": 4, "log_images": 0, "num_workers": 0, "lr": 1e-3, "pretrained": "no"}
'''
COPY_EVERY = 3  # every third list item is copied into the eval set


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, ray_session, mobilenet_weights) -> dict:
    root = tmp_path_factory.mktemp("fraction")
    data = generate(root / "scenes", scenes=8, views=3, size=(40, 56), seed=1)
    copies = root / "copies"
    copies.mkdir()
    lines = (data / "train_list.txt").read_text().splitlines()[::COPY_EVERY]
    for line in lines:
        for name in line.split():
            shutil.copy(data / name, copies / f"copy_{name}")
    (copies / "train_list.txt").write_text("".join(f"copy_{a} copy_{b}\n" for a, b in map(str.split, lines)))
    (root / "space.py").write_text(textwrap.dedent(SPACE))
    results = root / "results"
    argv = ["--space", str(root / "space.py"), "--data", str(data), "--results", str(results), "--name", "frac",
            "--verbose", "0", "--eval-data", f"copies={copies}"]
    return {"data": data, "results": results, "argv": argv, "copied": [ln.split()[0] for ln in lines]}


def _items(dataset) -> list:
    """The items of a training loader's ``DepthDataset``, through any wrapper (a seeded sampler's)."""
    while not hasattr(dataset, "items"):
        dataset = dataset.dataset
    return dataset.items


def test_a_run_counts_training_images_and_audits_its_eval_set(grid_run, capsys):
    exp = run(parse_args(grid_run["argv"]))
    out = capsys.readouterr().out
    board = pd.read_csv(exp / "leaderboard.csv")
    assert len(board) == 4 and (board.status == "finished").all(), board[["status", "error"]]
    split = json.loads((exp / "split.json").read_text())
    clusters = [split["cluster_of"][n] for n in split["train"]]
    sizes = collections.Counter(clusters)
    full = board[board.train_fraction == 1.0]
    assert (full.train_images == len(split["train"])).all()
    spec = DatasetSpec(grid_run["data"])
    bundle, _ = prepare_bundle(spec, grid_run["results"].resolve(), seed=0)  # the driver's bundle, from the cache
    for row in board[board.train_fraction == 0.5].itertuples():
        seed = json.loads((Path(row.checkpoint).parents[1] / "params.json").read_text())["seed"]
        cfg = TrialConfig(arch="unet", train_fraction=0.5, seed=seed, num_workers=0, batch_size=2)
        used = [it.name for it in _items(make_loaders(cfg, bundle)[0].dataset)]  # what the trial trains on
        assert len(used) == row.train_images
        kept = collections.Counter(split["cluster_of"][n] for n in used)
        assert all(kept[c] == sizes[c] for c in kept)  # whole clusters
        assert 0 <= len(used) - 0.5 * len(clusters) < max(sizes.values())  # exact to one cluster
    # The audit: the copies of training images (not those of validation images) are near-duplicates.
    expected = {f"copy_{n}": n for n in grid_run["copied"] if n in set(split["train"])}
    assert 0 < len(expected) < len(grid_run["copied"]), "copies of training and of validation images are both needed"
    record = json.loads((exp / "experiment.json").read_text())["leakage_audit"]
    found = record["sets"]["copies"]
    assert found["near_duplicates"] == len(expected)
    assert {e: t for e, t, _ in found["pairs"]} == expected and record["threshold"] == 0.9
    warning = f"warning: eval set copies: {len(expected)} image(s) have a near-duplicate in the training data"
    assert warning in out and warning in (exp / "leaderboard.md").read_text()
    assert "train_images" in (exp / "leaderboard.md").read_text()


def test_the_data_efficiency_and_audit_figures(grid_run, drawn_figures):
    drawn = drawn_figures
    exp = Experiment.load(grid_run["results"] / "frac")
    board = exp.saved_leaderboard()
    assert data_efficiency_figure(exp).name == "data_efficiency.png"
    (ax,) = drawn["data_efficiency.png"].axes
    assert ax.get_xlabel().startswith("training images") and ax.get_ylabel().startswith("validation si_rmse")
    assert ax.get_xscale() == "log"
    (line,) = ax.get_lines()
    assert line.get_label() == "unet"
    means = board.groupby("train_fraction")[["train_images", "si_rmse"]].mean().sort_values("train_images")
    np.testing.assert_allclose(line.get_xdata(), means.train_images)
    np.testing.assert_allclose(line.get_ydata(), means.si_rmse)
    assert len(ax.collections) == 2  # the seeds' band and the seeds' dots
    dots = ax.collections[1].get_offsets()
    assert sorted(map(tuple, np.asarray(dots))) == sorted(zip(board.train_images, board.si_rmse, strict=True))
    assert "2 seeds" in ax.get_title()

    # Quality against cost and speed: every trial measured its inference time; the Pareto front.
    assert (board.infer_ms > 0).all(), board.infer_ms
    assert pareto_figure(exp).name == "pareto.png"
    cost, speed = drawn["pareto.png"].axes
    assert cost.get_xlabel().startswith("cost") and speed.get_xlabel().startswith("inference time")
    front = next(line for line in speed.get_lines() if line.get_label() == "Pareto front")
    keep = grid.figures.pareto_front(board.infer_ms.to_numpy(), board.si_rmse.to_numpy())
    expected = board[keep].sort_values("infer_ms")
    np.testing.assert_allclose(front.get_xdata(), expected.infer_ms)
    np.testing.assert_allclose(front.get_ydata(), expected.si_rmse)
    assert len(speed.collections[0].get_offsets()) == len(board)  # every trial a dot

    assert audit_figure(exp).name == "audit_pairs.png"
    fig = drawn["audit_pairs.png"]
    titles = [ax.get_title() for ax in fig.axes]
    pairs = exp.record["leakage_audit"]["sets"]["copies"]["pairs"]
    assert titles[0::2] == [f"copies: {e}" for e, _, _ in pairs[:8]]
    assert titles[1::2] == [f"train: {t}" for _, t, _ in pairs[:8]]
