"""Predictions reproduce the leaderboard: on an experiment trained on NYU-like pairs with the
Eigen crop, ``grid.predict --experiment`` over a list of its own validation items, scored by
``grid.evaluate --experiment``, gives the leaderboard's si_rmse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_nyu_like

from grid.cli import command
from grid.cli.run import parse_args
from grid.experiment.run import run

evaluate_main = command("evaluate")
predict_main = command("predict")


@pytest.fixture(scope="module")
def nyu_like(tmp_path_factory) -> Path:
    return write_nyu_like(tmp_path_factory.mktemp("data") / "nyu", scenes=5, views=3, seed=6)


def _si_rmse(capsys, *argv) -> float:
    assert evaluate_main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("si_rmse")))


def test_predict_and_evaluate_reproduce_the_leaderboard_on_a_cropped_experiment(
        ray_session, nyu_like: Path, tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    exp = run(parse_args([
        "--space", "smoke", "--arch", "mobilenet_unet", "--set", "pretrained=yes", "--data", str(nyu_like), "--format", "pairs",
        "--depth-scale", "1000", "--crop", "eigen", "--results", str(results), "--gpus-per-trial", "0",
        "--verbose", "0", "--set", "max_val_images=0", "--set", "max_steps_per_epoch=8",
        "--set", "lr=0.003", "--set", "epochs=3", "--image-size", "48x64"]))
    board = pd.read_csv(exp / "leaderboard.csv")
    assert list(board.status) == ["finished"]
    split = json.loads((exp / "split.json").read_text())
    pairs = dict(line.split() for line in (nyu_like / "pairs.txt").read_text().splitlines())
    (nyu_like / "val.txt").write_text("".join(f"{rgb} {pairs[rgb]}\n" for rgb in split["val"]))

    preds = tmp_path / "preds"
    assert predict_main(["--experiment", str(exp), "--input", str(nyu_like / "val.txt"), "--out", str(preds),
                         "--no-png", "--workers", "0"]) == 0
    first = np.load(preds / pairs[split["val"][0]].replace(".png", ".npy"))
    assert first.shape == (426, 560)  # the crop, at the target's size
    assert np.std(np.log(first)) > 0.05, "a near-constant prediction would score alike with any crop"
    capsys.readouterr()
    score = _si_rmse(capsys, "--experiment", exp, "--pred", preds, "--data", nyu_like, "--list", "val.txt")
    assert score == pytest.approx(board.si_rmse[0], abs=1e-4)

    # The crop matters: the same model on whole frames, scored on their crop, scores otherwise.
    whole = tmp_path / "whole"
    assert predict_main(["--experiment", str(exp), "--input", str(nyu_like / "val.txt"), "--out", str(whole),
                         "--no-png", "--workers", "0", "--crop", "none"]) == 0
    capsys.readouterr()
    other = _si_rmse(capsys, "--experiment", exp, "--pred", whole, "--data", nyu_like, "--list", "val.txt")
    assert abs(other - board.si_rmse[0]) > 1e-3
