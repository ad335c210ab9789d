"""The driver's typed entry points: ``RunConfig`` at the door, ``run(cfg) -> Experiment``, and an
``Experiment`` read back from its folder equal to what the run wrote."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from grid import Experiment, RunConfig, run_grid
from grid.experiment.leaderboard import LeaderboardError
from grid.experiment.run import run
from grid.synth import generate
from trainables.config import ConfigError


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=3)


def test_run_grid_refuses_an_unknown_keyword_with_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="bogus"):
        run_grid("smoke", bogus=1, results=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize("settings, named", [
    ({"epochs": 0}, "--epochs"),
    ({"image_size": "3x4"}, "--image-size"),
    ({"val_fraction": 1.5}, "--val-fraction"),
    ({"format": "png"}, "--format"),
    ({"eval_data": ["no-dir-given"]}, "--eval-data"),
    ({"set": ["lr"]}, "--set"),
    ({"max_failures": 1.5}, "--max-failures"),
])
def test_run_config_names_the_bad_setting(settings: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RunConfig(space="smoke", **settings)


def test_run_config_normalises_what_the_command_line_and_python_give() -> None:
    cfg = RunConfig(space="smoke", data="d", image_size=(64, 80), set=["lr=0.001", "tag=x"], arch="unet",
                    eval_data=["tum=/data/tum:format=pairs,depth_scale=5000"])
    assert cfg.data == Path("d") and cfg.image_size == (64, 80) and cfg.arch == ("unet",)
    assert cfg.set == {"lr": 0.001, "tag": "x"} and cfg.eval_data[0].name == "tum"
    assert RunConfig(space="smoke", image_size="426x560").image_size == (426, 560)
    assert RunConfig(space="dir/my_space.py").experiment_name == "my_space"
    with pytest.raises(Exception, match="frozen|cannot assign"):
        cfg.space = "all_models"  # type: ignore[misc]


def test_experiment_load_refuses_a_folder_that_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(LeaderboardError, match="experiment.json: not found"):
        Experiment.load(tmp_path)


def test_an_experiment_read_back_equals_what_the_run_wrote(ray_session, scenes: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    written = run(RunConfig(space="smoke", data=scenes, results=results, gpus_per_trial=0, verbose=0))
    exp = Experiment.load(results / "smoke")
    assert isinstance(written, Experiment) and exp.path == written.path and exp.record == written.record

    # The leaderboard rebuilt from Tune's records equals the CSV the run wrote, cell for cell.
    csv = (exp / "leaderboard.csv").read_text()
    rebuilt = exp.leaderboard()
    assert rebuilt.to_csv(index=False) == csv
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(rebuilt.to_csv(index=False))), exp.saved_leaderboard())

    record = json.loads((exp / "experiment.json").read_text())
    assert exp.record == record and exp.name == "smoke"
    assert exp.spec.root == scenes and exp.spec.format == "cil"
    assert exp.image_size == tuple(record["image_size"])
    split = json.loads((exp / "split.json").read_text())
    assert exp.split.train == split["train"] and exp.split.val == split["val"]
    assert [it.name for it in exp.validation_items()] == [v for v in split["val"]]
    assert len(exp.trials) == len(rebuilt) == 2 and all(Path(t).is_dir() for t in exp.trials)

    board = exp.saved_leaderboard()
    finished = board[board.status == "finished"].sort_values("si_rmse")
    assert exp.best_checkpoints(1) == [Path(board.sort_values("si_rmse").checkpoint.iloc[0])]
    assert exp.best_checkpoints(2) == [Path(c) for c in finished.checkpoint]
    with pytest.raises(LeaderboardError, match="--ensemble 3 needs 3 finished trials"):
        exp.best_checkpoints(3)
