"""The leaderboard on hand-made trial folders: one epoch per row (the best, whose checkpoint the
row points to), statuses of recovered and misconfigured trials, GPU-hours of every attempt and
their cost."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from grid.experiment.cost import cost_line
from grid.experiment.leaderboard import build_leaderboard, format_table
from grid.experiment.plan import ExperimentError


def _trial(tune_dir: Path, name: str, epochs: list[dict], *, planned: int, error: str = "",
           extra_rows: list[dict] = ()) -> Path:
    """A Tune trial folder as Tune and the trainable write it: params.json, result.json lines
    (``extra_rows`` first: a killed attempt's reports), one checkpoint per epoch, error.txt."""
    trial = tune_dir / name
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"arch": "unet", "lam": 0.5, "lr": 1e-3, "epochs": planned}))
    rows = [*extra_rows, *epochs]
    (trial / "result.json").write_text("".join(json.dumps({**r, "trial_id": name}) + "\n" for r in rows))
    for i, r in enumerate(epochs):
        ckpt = trial / f"checkpoint_{i:06d}"
        ckpt.mkdir()
        (ckpt / "checkpoint.pt").write_bytes(b"weights")
        (ckpt / "metrics.json").write_text(json.dumps(r))
    if error:
        (trial / "error.txt").write_text(error)
    return trial


def _epoch(epoch: int, si: float, loss: float, seconds: float = 10.0) -> dict:
    return {"epoch": epoch, "si_rmse": si, "abs_rel": si / 2, "rmse": si * 3, "delta1": 1 - si,
            "train_loss": loss, "params": 100, "weights": "none (from scratch)", "time_this_iter_s": seconds}


@pytest.fixture
def experiment(tmp_path: Path) -> tuple[Path, Path]:
    tune_dir = tmp_path / "ray" / "exp"
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "experiment.json").write_text(json.dumps({"tune_dirs": [str(tune_dir)], "gpus_per_trial": 1}))
    return exp, tune_dir


def test_a_row_is_the_best_epoch_with_its_checkpoint(experiment) -> None:
    exp, tune_dir = experiment
    trial = _trial(tune_dir, "t_middle", [_epoch(1, 0.30, 0.9), _epoch(2, 0.20, 0.5), _epoch(3, 0.25, 0.1)],
                   planned=3)
    (row,) = build_leaderboard(exp).to_dict("records")
    assert row["best_epoch"] == 2 and row["epochs_done"] == 3
    assert (row["si_rmse"], row["abs_rel"], row["rmse"], row["delta1"]) == pytest.approx((0.20, 0.10, 0.60, 0.80))
    assert row["train_loss"] == 0.5  # the same epoch's, not the last epoch's 0.1
    assert row["checkpoint"] == str(trial / "checkpoint_000001" / "checkpoint.pt")
    assert row["status"] == "finished" and row["weights"] == "none (from scratch)"
    assert "| 2 | 0.2000 |" in format_table(build_leaderboard(exp))


def test_a_recovered_trial_is_finished_and_every_attempt_counts(experiment) -> None:
    exp, tune_dir = experiment
    killed_attempt = [_epoch(1, 0.30, 0.9, seconds=1800.0), _epoch(2, 0.28, 0.8, seconds=1800.0)]
    _trial(tune_dir, "t_retried", [_epoch(1, 0.30, 0.9, 1800.0), _epoch(2, 0.22, 0.7, 1800.0)], planned=2,
           error="Failure # 1 (occurred at 2026-12-01)\nRayActorError: the actor died unexpectedly\n",
           extra_rows=killed_attempt)
    (row,) = build_leaderboard(exp).to_dict("records")
    assert row["status"] == "finished" and row["error"] == ""
    assert row["si_rmse"] == pytest.approx(0.22)  # the stand-in epoch 2, not the killed attempt's
    assert row["gpu_hours"] == pytest.approx(2.0)  # 4 reports of 30 min, 1 GPU each


def test_a_failed_and_a_misconfigured_trial_are_errors(experiment) -> None:
    exp, tune_dir = experiment
    _trial(tune_dir, "t_failed", [_epoch(1, 0.3, 0.9)], planned=3,
           error="Failure # 1\nValueError: something broke in epoch 2\n")
    bad = tune_dir / "t_config"
    bad.mkdir(parents=True)
    (bad / "params.json").write_text(json.dumps({"arch": "unet", "epochs": 3}))
    (bad / "result.json").write_text(json.dumps({"si_rmse": float("nan"), "trial_id": "t_config",
                                                 "config_error": "trial setting lr=-1.0 must be a positive number"}))
    board = build_leaderboard(exp).set_index("trial_id")
    assert board.loc["t_failed", "status"] == "error"
    assert "something broke" in board.loc["t_failed", "error"]
    assert board.loc["t_config", "status"] == "error"
    assert "ConfigError: trial setting lr=-1.0" in board.loc["t_config", "error"]


def test_gpu_hours_are_priced_by_the_accelerator_each_trial_ran_on(experiment, tmp_path: Path) -> None:
    exp, tune_dir = experiment
    for name, device in [("t_t4", "cuda:0 (Tesla T4)"), ("t_p100", "cuda:0 (Tesla P100-PCIE-16GB)"),
                         ("t_new", "cuda:0 (NVIDIA H200)"), ("t_logical", "cpu")]:
        _trial(tune_dir, name, [{**_epoch(1, 0.3, 0.5, seconds=1800.0), "device_name": device}], planned=1)
    board = build_leaderboard(exp).set_index("trial_id")
    assert board.loc["t_t4", ["accelerator", "cost_usd"]].tolist() == ["T4", pytest.approx(0.5 * 0.14)]
    assert board.loc["t_p100", ["accelerator", "cost_usd"]].tolist() == ["P100", pytest.approx(0.5 * 0.43)]
    assert board.loc["t_logical", "accelerator"] == "default (no CUDA device seen)"
    assert board.loc["t_logical", "cost_usd"] == pytest.approx(0.5 * 0.14)
    assert board.loc["t_new", "accelerator"] == "unknown (NVIDIA H200)" and math.isnan(board.loc["t_new", "cost_usd"])
    table = format_table(board.reset_index())
    assert "| unknown |" in table and "| $0.0700 |" in table and "| $0.21 |" in table
    line = cost_line(board)  # $0.07 + $0.215 + $0.07; the H200's half hour is not counted
    assert line.startswith("Estimated cost: $0.3") and "for 1.5000 GPU-hours" in line
    assert "0.5000 GPU-hours on unpriced accelerators not counted (NVIDIA H200)" in line
    # The user's table replaces the built-in one.
    (tmp_path / "prices.toml").write_text('"H200" = 3.0\nT4 = 0.2\n')
    board = build_leaderboard(exp, prices=tmp_path / "prices.toml").set_index("trial_id")
    assert board.loc["t_new", "cost_usd"] == pytest.approx(1.5) and board.loc["t_t4", "cost_usd"] == pytest.approx(0.1)
    assert math.isnan(board.loc["t_logical", "cost_usd"])  # no default entry in that table: unknown
    (tmp_path / "bad.json").write_text('{"T4": "cheap"}')
    with pytest.raises(ExperimentError, match=r"bad\.json.*bad entries: \['T4'\]"):
        build_leaderboard(exp, prices=tmp_path / "bad.json")


def test_cpu_trials_cost_nothing(tmp_path: Path) -> None:
    tune_dir = tmp_path / "ray" / "exp"
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "experiment.json").write_text(json.dumps({"tune_dirs": [str(tune_dir)], "gpus_per_trial": 0}))
    _trial(tune_dir, "t_cpu", [{**_epoch(1, 0.3, 0.5, seconds=1800.0), "device_name": "cpu"}], planned=1)
    (row,) = build_leaderboard(tmp_path / "exp").to_dict("records")
    assert (row["gpu_hours"], row["accelerator"], row["cost_usd"]) == (0.0, "cpu", 0.0)
    assert cost_line(build_leaderboard(tmp_path / "exp")) == "Estimated cost: $0 (no trial held a GPU)"
