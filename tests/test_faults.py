"""Faults: a failing trial does not stop the grid, a SIGKILLed trial resumes from its checkpoint,
and bad input fails early with a clear message and nothing half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from grid.run import main, parse_args, run
from grid.synth import generate
from trainables.io import atomic_write


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=2)


def _grid(scenes: Path, results: Path, name: str, *extra: str) -> Path:
    return run(parse_args(["--space", "smoke", "--data", str(scenes), "--results", str(results), "--name", name,
                           "--gpus-per-trial", "0", "--verbose", "0", *extra]))


def test_a_failing_trial_does_not_stop_the_grid(ray_session, scenes: Path, tmp_path: Path):
    # The fault hits the architecture first by name and first to run (one trial at a time), so
    # the healthy trial is still to come when it fails, and a leaderboard in name or run order
    # would list it first: only sorting by score puts it last.
    exp = _grid(scenes, tmp_path / "results", "isolation", "--arch", "mobilenet_unet", "--arch", "unet",
                "--max-concurrent", "1", "--set", "fault=mobilenet_unet:raise@0.1", "--max-failures", "1")
    board = pd.read_csv(exp / "leaderboard.csv")
    assert list(board.arch) == ["unet", "mobilenet_unet"], board[["arch", "status", "si_rmse"]]
    ok, failed = board.iloc[0], board.iloc[1]
    assert ok.status == "finished" and ok.epochs_done == 1 and Path(ok.checkpoint).is_file()
    assert failed.status == "error" and pd.isna(failed.si_rmse) and pd.isna(failed.checkpoint)
    assert "injected fault at epoch 0 step 1" in str(failed.error)
    report = (exp / "leaderboard.md").read_text()
    assert f"`{failed.trial_id}` (mobilenet_unet) failed: {failed.error}" in report


def test_a_sigkilled_trial_resumes_from_its_checkpoint(ray_session, scenes: Path, tmp_path: Path):
    """The trial process kills itself (SIGKILL) at the start of its second epoch; Tune retries it
    from the epoch-1 checkpoint and it ends with exactly epochs 1, 2, 3 logged once each."""
    results = tmp_path / "results"
    exp = _grid(scenes, results, "preempt", "--arch", "mobilenet_unet", "--set", "epochs=3",
                "--set", "fault=mobilenet_unet:kill@1.0", "--max-failures", "2")
    board = pd.read_csv(exp / "leaderboard.csv")
    assert list(board.status) == ["finished"] and list(board.epochs_done) == [3]
    (trial_dir,) = [p.parent for p in (results / "ray" / "preempt").glob("*/params.json")]
    assert "Failure # 1" in (trial_dir / "error.txt").read_text()  # it really died once
    epochs = [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    events = EventAccumulator(str(trial_dir)).Reload()
    assert [e.step for e in events.Scalars("val/si_rmse")] == [1, 2, 3]


@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "--epochs: must be > 0"),
    (["--image-size", "3x4"], "at least 8x8"),
    (["--image-size", "big"], "must look like 426x560"),
    (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0"),
    (["--depth-scale", "nan"], "must be > 0"),
])
def test_invalid_cli_numbers_exit_with_a_message(argv: list[str], message: str, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--space", "smoke", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_architecture_and_unwritable_storage(scenes: Path, tmp_path: Path, capsys):
    assert main(["--space", "smoke", "--arch", "resnet9000", "--data", str(scenes),
                 "--results", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    assert "unknown architecture(s) ['resnet9000']" in err and "segformer_b5" in err
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["--space", "smoke", "--data", str(scenes), "--results", str(tmp_path / "r2"),
                 "--storage", str(blocker / "ray")]) == 2
    assert f"{blocker / 'ray'}: cannot write results there" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "splits").exists()  # nothing computed before the check


def test_corrupt_image_fails_before_any_trial(scenes: Path, tmp_path: Path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(scenes, data)
    victim = sorted(data.glob("*_rgb.png"))[3]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated PNG
    assert main(["--space", "smoke", "--data", str(data), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert victim.name in err
    assert not list((tmp_path / "r" / "ray").iterdir())  # no Tune experiment started
    assert not list((tmp_path / "r" / "splits").glob("*.json"))  # no split cached


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path):
    target = tmp_path / "leaderboard.csv"
    target.write_text("old,complete\n")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("new,half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["leaderboard.csv"]  # no temp file left
    old_mask = os.umask(0o022)
    try:
        with atomic_write(target) as fh:
            fh.write("new,complete\n")
    finally:
        os.umask(old_mask)
    assert target.read_text() == "new,complete\n"
    assert target.stat().st_mode & 0o777 == 0o644  # as a plain write under umask 022, not 0600
