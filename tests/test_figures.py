"""grid.figures: the three PNGs of an experiment exist and show something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_predict import make_checkpoint, make_experiment

import grid.figures
from grid.cli import command
from grid.figures import best_per_arch

main = command("figures")


def _assert_not_blank(path: Path, min_colours: int = 20) -> None:
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.std() > 0
    assert len(np.unique(img.reshape(-1, 3), axis=0)) >= min_colours, path.name


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fig")
    a = make_checkpoint(root / "a" / "checkpoint.pt", seed=1, image_size=(24, 32))
    b = make_checkpoint(root / "b" / "checkpoint.pt", seed=2, image_size=(24, 32))
    m = make_checkpoint(root / "m" / "checkpoint.pt", name="mobilenet_unet", image_size=(32, 32))
    return make_experiment(root, [
        {"trial_id": "b", "arch": "unet", "si_rmse": 0.31, "status": "finished", "checkpoint": str(b)},
        {"trial_id": "m", "arch": "mobilenet_unet", "si_rmse": 0.22, "status": "stopped", "checkpoint": str(m)},
        {"trial_id": "a", "arch": "unet", "si_rmse": 0.25, "status": "finished", "checkpoint": str(a)},
        {"trial_id": "e", "arch": "segformer_b4", "status": "error", "error": "OOM", "checkpoint": ""},
    ])


def test_all_figures_exist_and_are_not_blank(experiment, drawn_figures):
    drawn = drawn_figures
    assert main(["--experiment", str(experiment), "--n", "2", "--device", "cpu"]) == 0
    figures = experiment / "figures"
    assert sorted(p.name for p in figures.glob("*.png")) == ["clusters.png", "comparison.png",
                                                             "leaderboard.png"]
    for p in figures.glob("*.png"):
        _assert_not_blank(p)
    # Two architectures with a checkpoint, best first: 2 rows (images) of 4 panels,
    # RGB | target | mobilenet_unet | unet.
    panels = [ax for ax in drawn["comparison.png"].axes if ax.images]  # colour bars hold none
    cells = {(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start): ax for ax in panels}
    assert len(panels) == 8 and set(cells) == {(r, c) for r in range(2) for c in range(4)}, sorted(cells)
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in panels} == {(2, 4)}
    assert [cells[0, c].get_title().split("\n")[0] for c in range(4)] == ["RGB", "target", "mobilenet_unet",
                                                                          "unet"]
    assert all(cells[r, 0].images[0].get_array().ndim == 3 for r in range(2))  # RGB in column 0
    w, h = Image.open(figures / "comparison.png").size
    assert w > h


def test_best_per_arch_skips_errors_and_keeps_the_best_trial():
    df = pd.DataFrame({
        "arch": ["unet", "unet", "segformer_b4", "resnet_unet", "resnet_unet"],
        "si_rmse": [0.30, 0.20, np.nan, 0.25, 0.10],
        "status": ["finished", "finished", "error", "finished", "error"],
        "checkpoint": ["/u1", "/u2", "", "/r1", "/r2"],
    })
    best = best_per_arch(df)
    assert list(best.arch) == ["unet", "resnet_unet"] and list(best.checkpoint) == ["/u2", "/r1"]
    assert len(best_per_arch(df, max_models=1)) == 1


def test_missing_split_skips_only_the_figures_that_need_it(experiment, tmp_path):
    import json
    import shutil

    exp = tmp_path / "exp"
    shutil.copytree(experiment, exp, ignore=shutil.ignore_patterns("figures"))
    info = json.loads((exp / "experiment.json").read_text())
    info["split"] = str(tmp_path / "gone.json")
    (exp / "experiment.json").write_text(json.dumps(info))
    assert main(["--experiment", str(exp), "--n", "1", "--device", "cpu"]) == 1
    assert [p.name for p in (exp / "figures").glob("*.png")] == ["leaderboard.png"]


def test_a_foreign_figure_is_kept_unless_overwrite_and_a_rerun_replaces_its_own(experiment, tmp_path, capsys):
    import shutil

    exp = tmp_path / "exp"
    shutil.copytree(experiment, exp, ignore=shutil.ignore_patterns("figures"))
    (exp / "figures").mkdir()
    (exp / "figures" / "leaderboard.png").write_text("my own chart")
    args = ["--experiment", str(exp), "--n", "1", "--max-models", "1", "--device", "cpu"]
    assert main(args) == 2
    assert "leaderboard.png: exists and depth-grid did not write it; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in (exp / "figures").iterdir()] == ["leaderboard.png"]  # refused before drawing any
    assert main([*args, "--overwrite"]) == 0
    assert main(args) == 0  # its own figures now: replaced without --overwrite
    _assert_not_blank(exp / "figures" / "leaderboard.png")


def test_data_efficiency_figure_groups_by_architecture_and_fraction(tmp_path, drawn_figures):
    """Two architectures x three fractions x two seeds (one seed errored): one line per
    architecture through the mean si_rmse over the seeds, at the mean training images; a band
    where two seeds finished; no figure without several fractions."""
    drawn = drawn_figures
    from grid.experiment.record import Experiment
    from grid.figures import data_efficiency_figure

    trials = []
    for arch, base in (("unet", 0.40), ("mobilenet_unet", 0.30)):
        for fraction, images in ((0.1, 10), (0.5, 50), (1.0, 100)):
            for seed in (0, 1):
                trials.append({"trial_id": f"{arch}{fraction}{seed}", "arch": arch, "train_fraction": fraction,
                               "train_images": images + seed, "seed": seed, "status": "finished",
                               "si_rmse": base - 0.1 * fraction + 0.01 * seed})
    trials[-1].update(status="error", si_rmse="")  # mobilenet_unet, 1.0, seed 1
    exp = Experiment.load(make_experiment(tmp_path / "a", trials))
    assert data_efficiency_figure(exp).name == "data_efficiency.png"
    (ax,) = drawn["data_efficiency.png"].axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["mobilenet_unet", "unet"]
    np.testing.assert_allclose(lines["unet"].get_xdata(), [10.5, 50.5, 100.5])
    np.testing.assert_allclose(lines["unet"].get_ydata(), [0.395, 0.355, 0.305])
    np.testing.assert_allclose(lines["mobilenet_unet"].get_xdata(), [10.5, 50.5, 100])
    np.testing.assert_allclose(lines["mobilenet_unet"].get_ydata(), [0.295, 0.255, 0.2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10\n10%", "50\n50%", "100\n100%"]
    assert ax.get_xscale() == "log" and ax.get_ylabel().startswith("validation si_rmse")
    assert len(ax.collections) == 4  # per architecture: the seeds' band and their dots

    one = Experiment.load(make_experiment(tmp_path / "b", [dict(t, train_fraction=1.0) for t in trials]))
    assert data_efficiency_figure(one) is None


def test_pareto_front_is_what_no_other_point_beats():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)  # ties on purpose
    brute = [not any(x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i]) for j in range(40))
             for i in range(40)]
    np.testing.assert_array_equal(grid.figures.pareto_front(x, y), brute)
    assert grid.figures.pareto_front(np.array([1.0, 1.0]), np.array([2.0, 2.0])).all()  # equal points: both


def test_pareto_figure_draws_the_front_against_cost_and_time(tmp_path, drawn_figures):
    drawn = drawn_figures
    from grid.experiment.record import Experiment
    from grid.figures import pareto_figure

    rows = [("a", "unet", 0.30, 1.0, 5.0), ("b", "unet", 0.25, 2.0, 9.0), ("c", "mobilenet_unet", 0.28, 3.0, 4.0),
            ("d", "segformer_b4", 0.20, 4.0, 20.0), ("e", "unet", 0.35, 5.0, 30.0)]
    trials = [{"trial_id": t, "arch": a, "si_rmse": s, "cost_usd": c, "infer_ms": ms, "status": "finished"}
              for t, a, s, c, ms in rows]
    exp = Experiment.load(make_experiment(tmp_path / "p", trials))
    assert pareto_figure(exp).name == "pareto.png"
    cost, speed = drawn["pareto.png"].axes
    assert cost.get_xlabel().startswith("cost") and speed.get_xlabel().startswith("inference time")
    fronts = {ax: next(line for line in ax.get_lines() if line.get_label() == "Pareto front") for ax in (cost, speed)}
    np.testing.assert_allclose(fronts[cost].get_xdata(), [1.0, 2.0, 4.0])  # a, b, d; c and e are beaten
    np.testing.assert_allclose(fronts[cost].get_ydata(), [0.30, 0.25, 0.20])
    np.testing.assert_allclose(fronts[speed].get_xdata(), [4.0, 9.0, 20.0])  # c, b, d
    assert len(cost.collections[0].get_offsets()) == 5  # every trial a dot
    assert pareto_figure(Experiment.load(make_experiment(tmp_path / "q", [
        {k: v for k, v in t.items() if k not in ("cost_usd", "infer_ms")} for t in trials]))) is None
