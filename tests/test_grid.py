"""Real Tune experiments of the smoke space on generated scenes: leaderboard, checkpoints,
TensorBoard, logical-GPU scheduling, and resuming an interrupted experiment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from grid.cli import command
from grid.cli.run import parse_args
from grid.experiment.leaderboard import Storage, tune_statuses
from grid.experiment.run import run
from grid.synth import generate

leaderboard_main = command("leaderboard")
grid_main = command("run")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=1)


def _trial_dirs(results: Path, name: str) -> list[Path]:
    return sorted(p.parent for p in (results / "ray" / name).glob("*/params.json"))


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _tune_spans(tune_dir: Path) -> dict[str, tuple[float, float]]:
    """Each trial's (start, last result) float wall times from Tune's newest experiment state.

    Tune's controller stamps both in one process: ``start_time`` when the trial's actor has
    started (so holds its resources), ``last_result_time`` when its last result arrives, before
    Tune stops it and frees them. A trial that waited for another's GPU starts after that one's
    last result. (result.json's ``timestamp`` is whole seconds, as long as a tiny trial.)"""
    state = json.loads(sorted(tune_dir.glob("experiment_state-*.json"))[-1].read_text())
    spans = {}
    for trial_json, run_json in state["trial_data"]:
        meta = json.loads(run_json)
        spans[json.loads(trial_json)["trial_id"]] = (meta["start_time"], meta["last_result_time"])
    return spans


def test_smoke_grid_writes_leaderboard_checkpoints_and_tensorboard(ray_session, scenes: Path, tmp_path: Path,
                                                                   capsys):
    from grid import run_grid  # the Python API: the same plan, validation and run as the CLI

    results = tmp_path / "results"
    board, exp = run_grid("smoke", data=scenes, results=results, gpus_per_trial=0, verbose=0)
    pd.testing.assert_frame_equal(board, pd.read_csv(exp / "leaderboard.csv"))
    assert sorted(board.arch) == ["mobilenet_unet", "unet"]
    assert (board.status == "finished").all(), board[["arch", "status", "error"]]
    assert board.si_rmse.notna().all() and (board.si_rmse > 0).all()
    assert (board.epochs_done == 1).all() and (board.best_epoch == 1).all() and (board.params > 0).all()
    assert (board.gpu_hours == 0).all() and (board.cost_usd == 0).all() and set(board.accelerator) == {"cpu"}
    assert (exp / "leaderboard.md").read_text().count("| unet") == 1
    # Each row against what the trial itself wrote: its reports and its checkpoint's metrics
    # (tests/test_leaderboard.py covers a best epoch that is not the last).
    for row in board.itertuples():
        (trial_dir,) = [d for d in _trial_dirs(results, "smoke") if row.trial_id in d.name]
        reports = _results(trial_dir)
        assert row.si_rmse == pytest.approx(min(r["si_rmse"] for r in reports))
        assert row.train_loss == pytest.approx(reports[0]["train_loss"])
        state = torch.load(row.checkpoint, map_location="cpu", weights_only=True)
        assert state["metrics"]["si_rmse"] == pytest.approx(row.si_rmse) and state["epoch"] == row.best_epoch
    record = json.loads((exp / "experiment.json").read_text())
    assert (record["split_method"], record["split_threshold"]) == ("sequence", 0.9)

    # The same name with other settings is refused, and nothing of the experiment changes.
    before = {f: (exp / f).read_bytes() for f in ("split.json", "experiment.json", "leaderboard.csv")}
    assert grid_main(["--space", "smoke", "--data", str(scenes), "--results", str(results),
                      "--gpus-per-trial", "0", "--epochs", "3"]) == 2
    assert "started with other settings" in capsys.readouterr().err
    # The split rule is part of what a resume must match.
    assert grid_main(["--space", "smoke", "--data", str(scenes), "--results", str(results),
                      "--gpus-per-trial", "0", "--split", "paper", "--split-threshold", "0.95"]) == 2
    assert "started with other settings" in capsys.readouterr().err
    assert {f: (exp / f).read_bytes() for f in before} == before

    # python -m grid.leaderboard rebuilds the table from disk, without Ray's help (the rows were
    # checked against the trials' own files above).
    (exp / "leaderboard.csv").unlink()
    assert leaderboard_main([str(exp)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(exp / "leaderboard.csv"), board)

    for path in board.checkpoint:
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert state["epoch"] == 1 and state["arch_config"]["name"] in {"unet", "mobilenet_unet"}
        assert {"model", "optimizer", "scaler"} <= set(state)

    record = json.loads((exp / "experiment.json").read_text())
    split = json.loads(Path(record["split"]).read_text())
    assert split["val"] and not set(split["val"]) & set(split["train"])

    trial_dirs = _trial_dirs(results, "smoke")
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        events = EventAccumulator(str(trial_dir), size_guidance={"images": 4}).Reload()
        tags = events.Tags()
        assert {"val/si_rmse", "val/delta1", "train/train_loss", "train/lr"} <= set(tags["scalars"])
        # One view per trial: only the trainable's own events, not Tune's ray/tune/* copies.
        assert not [t for t in tags["scalars"] if t.startswith("ray/")], tags["scalars"]
        assert len(list(trial_dir.glob("events.out.tfevents.*"))) == 1
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")  # the HParams view
        assert "val/depth_0" in tags["images"]
        image = events.Images("val/depth_0")[0]
        assert (image.height, image.width) == (40, 3 * 56)  # RGB | target | prediction at native size


def test_trials_request_a_gpu_each_and_run_on_the_cpu(ray_session, scenes: Path, tmp_path: Path):
    """The session's Ray has one logical GPU: trials hold it (Ray assigns GPU id 0), and since
    torch sees no CUDA device they fall back to the CPU."""
    results = tmp_path / "results"
    run(parse_args(["--space", "smoke", "--data", str(scenes), "--results", str(results), "--name", "gpu",
                    "--gpus-per-trial", "1", "--verbose", "0"]))
    rows = [_results(d)[-1] for d in _trial_dirs(results, "gpu")]
    assert len(rows) == 2
    assert all(r["gpu_ids"] == "0" and r["device"] == "cpu" for r in rows), rows
    # One logical GPU and one GPU per trial: the two trials cannot have overlapped. A tiny trial
    # lasts well under a second, so whole-second timestamps could not tell; Tune's float times can.
    spans = sorted(_tune_spans(results / "ray" / "gpu").values())
    assert len(spans) == 2
    assert spans[0][1] < spans[1][0], f"the trials overlapped by {spans[0][1] - spans[1][0]:.3f} s: {spans}"


def test_bad_space_key_and_space_name_fail_before_any_trial(scenes: Path, tmp_path: Path, capsys):
    main = command("run")

    assert main(["--space", "no_such_space", "--data", str(scenes), "--results", str(tmp_path)]) == 2
    assert "unknown search space 'no_such_space'" in capsys.readouterr().err
    assert main(["--space", "smoke", "--data", str(scenes), "--results", str(tmp_path),
                 "--set", "lamda=0.5"]) == 2
    assert "unknown key(s) ['lamda']" in capsys.readouterr().err
    assert not (tmp_path / "ray").exists()


def _grid_cmd(scenes: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "grid.run", "--space", "smoke", "--data", str(scenes), "--results", str(results),
            "--name", "resume", "--gpus-per-trial", "0", "--max-concurrent", "1", "--verbose", "1",
            "--set", "fault=mobilenet_unet:sleep@3", "--set", "epochs=3"]


@pytest.mark.slow
def test_rerunning_resumes_an_interrupted_experiment(scenes: Path, tmp_path: Path):
    """Kill the driver (and the Ray it started) after the first trial finished; the same command
    then finishes the experiment without re-running the finished trial."""
    results = tmp_path / "results"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(_grid_cmd(scenes, results), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 240
    finished = None
    while time.time() < deadline and proc.poll() is None:
        # Kill once storage records one trial as terminated and the other as under way.
        store = Storage(str(results / "ray" / "resume"))
        states = tune_statuses(store) if store.is_dir(store.root) else {}
        dirs = _trial_dirs(results, "resume")
        started = [d for d in dirs if list(d.glob("checkpoint_*/metrics.json"))]
        if sorted(states.values()) == ["incomplete", "stopped"] and len(started) == 2:
            (done_id,) = [t for t, s in states.items() if s == "stopped"]
            finished = next(d for d in dirs if done_id in d.name)
            break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished is not None, (tmp_path / "first.log").read_text()[-3000:]
    before = (finished / "result.json").read_text()
    assert not (results / "resume" / "leaderboard.csv").exists()

    second = subprocess.run(_grid_cmd(scenes, results), cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Resuming experiment" in second.stdout
    # A quiet terminal: the compact trial table, no configuration box per trial, no traceback.
    assert "val si_rmse" in second.stdout and "started with configuration" not in second.stdout
    assert "Traceback" not in second.stdout + second.stderr and "Exception ignored" not in second.stderr
    assert (finished / "result.json").read_text() == before  # the finished trial did not run again
    board = pd.read_csv(results / "resume" / "leaderboard.csv")
    assert len(board) == 2 and (board.status == "finished").all() and (board.epochs_done == 3).all()
