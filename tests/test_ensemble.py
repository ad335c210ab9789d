"""grid.inference.ensemble: the top-K trials' mean log-depth, each at its own input size, through predict,
submit and evaluate (hand-made experiments of tiny real checkpoints, no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_predict import make_checkpoint, make_experiment, reference_depth
from test_submit import _decode, _test_set

from grid.cli import command
from grid.inference.predict import load_checkpoint_model
from grid.inference.submit import read_submission
from trainables.data import DatasetSpec, index_dataset, load_depth
from trainables.metrics import MetricAccumulator

evaluate_main = command("evaluate")
predict_main = command("predict")
submit_main = command("submit")


@pytest.fixture
def experiment(tmp_path):
    """Three finished trials of two architectures at two input sizes, and a better errored one."""
    best = make_checkpoint(tmp_path / "t1" / "checkpoint.pt", seed=1, image_size=(32, 48))
    second = make_checkpoint(tmp_path / "t2" / "checkpoint.pt", name="mobilenet_unet", seed=2, image_size=(24, 40))
    third = make_checkpoint(tmp_path / "t3" / "checkpoint.pt", seed=3)
    exp = make_experiment(tmp_path, [
        {"trial_id": "t3", "arch": "unet", "si_rmse": 0.50, "status": "finished", "checkpoint": str(third)},
        {"trial_id": "t4", "arch": "unet", "si_rmse": 0.10, "status": "error", "checkpoint": str(third)},
        {"trial_id": "t2", "arch": "mobilenet_unet", "si_rmse": 0.30, "status": "finished",
         "checkpoint": str(second)},
        {"trial_id": "t1", "arch": "unet", "si_rmse": 0.20, "status": "finished", "checkpoint": str(best)},
    ])
    return exp, [load_checkpoint_model(p) for p in (best, second)]


def _geometric_mean(members, rgb: np.ndarray) -> np.ndarray:
    """exp(mean of the members' log-depth), each predicted at its own size (the reference of
    tests/test_predict.py, written out independently of grid.predict)."""
    logs = [np.log(reference_depth(model, rgb, info["image_size"]).astype(np.float64)) for model, info in members]
    return np.exp(np.mean(logs, axis=0))


def test_ensemble_prediction_is_the_mean_log_depth_of_the_best_two(experiment, tmp_path):
    exp, members = experiment
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(tmp_path / "odd.png")
    assert predict_main(["--experiment", str(exp), "--ensemble", "2", "--input", str(tmp_path / "odd.png"),
                         "--out", str(tmp_path / "out"), "--workers", "0", "--no-png"]) == 0
    depth = np.load(tmp_path / "out" / "odd.npy")
    rgb = np.array(Image.open(tmp_path / "odd.png"))
    expected = _geometric_mean(members, rgb)
    assert depth.shape == (37, 53)
    np.testing.assert_allclose(depth, expected, rtol=1e-5)
    # Not one member's map: the two differ, and the ensemble lies between them.
    one, two = (reference_depth(m, rgb, i["image_size"]) for m, i in members)
    assert not np.allclose(one, two, rtol=1e-2)
    assert ((depth >= np.minimum(one, two) * (1 - 1e-5)) & (depth <= np.maximum(one, two) * (1 + 1e-5))).all()


def test_submit_ensemble_writes_a_valid_competition_csv(experiment, tmp_path):
    exp, members = experiment
    data, ids = _test_set(tmp_path / "kaggle", n=3)
    out = tmp_path / "sub" / "submission.csv"
    assert submit_main(["--experiment", str(exp), "--ensemble", "2", "--data", str(data), "--out", str(out),
                        "--workers", "0"]) == 0
    rows = read_submission(out)
    assert [r[0] for r in rows] == ids
    for ident, cell in rows:
        rgb = np.array(Image.open(data / "test" / ident.replace("_depth", "_rgb.png")))
        expected = _geometric_mean(members, rgb)
        np.testing.assert_allclose(np.load(out.parent / f"{ident}.npy"), expected, rtol=1e-5)
        values = _decode(cell).reshape(rgb.shape[:2])
        np.testing.assert_allclose(values, np.round(np.maximum(expected, 0.01), 2), atol=0.0100001)


def test_evaluate_ensemble_scores_it_against_its_members_and_the_leaderboard_shows_it(experiment, capsys):
    exp, members = experiment
    assert evaluate_main(["--experiment", str(exp), "--ensemble", "2"]) == 0
    printed = capsys.readouterr().out
    assert "top-2 ensemble" in printed and "mobilenet_unet `t2`" in printed
    record = json.loads((exp / "ensemble.json").read_text())
    assert [m["trial_id"] for m in record["members"]] == ["t1", "t2"] and record["images"] == 2
    # The validation split's two items, scored independently at native resolution.
    info = json.loads((exp / "experiment.json").read_text())
    spec = DatasetSpec(root=info["data"]["root"])
    val = [it for it in index_dataset(spec) if it.name in ("sample_000004_rgb.png", "sample_000005_rgb.png")]
    acc = MetricAccumulator()
    for item in val:
        acc.update(_geometric_mean(members, np.array(Image.open(item.rgb))), load_depth(item, spec))
    for name, value in acc.result().items():
        assert record["ensemble"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert "## Top-2 ensemble" in (exp / "leaderboard.md").read_text()


def test_too_few_finished_trials_is_a_clear_error(experiment, tmp_path, capsys):
    exp, _ = experiment
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    assert predict_main(["--experiment", str(exp), "--ensemble", "4", "--input", str(img),
                         "--out", str(tmp_path / "o")]) == 2
    assert "--ensemble 4 needs 4 finished trials" in capsys.readouterr().err
    assert evaluate_main(["--ensemble", "2"]) == 2
    assert "--ensemble needs --experiment" in capsys.readouterr().err
