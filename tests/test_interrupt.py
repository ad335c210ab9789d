"""Ctrl-C during ``depth-grid run``: the run stops with exit status 130 (so ``run && submit``
stops too), its leaderboard names the trials it interrupted, and the same command resumes them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from grid.synth import generate

ROOT = Path(__file__).resolve().parents[1]
NAME = "ctrl-c"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=4)


def _command(scenes: Path, results: Path) -> list[str]:
    # Three epochs of two steps, each step a second longer (the test-only fault): a trial lasts
    # several seconds after its first checkpoint, so the Ctrl-C lands while both trials run.
    return [sys.executable, "-m", "grid.cli", "run", "--space", "smoke", "--data", str(scenes), "--results",
            str(results), "--name", NAME, "--gpus-per-trial", "0", "--verbose", "0", "--set", "epochs=3",
            "--set", "fault=sleep@1"]


def _first_checkpoint(results: Path, proc: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    """Wait (bounded) until some trial has saved its first checkpoint."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any((results / "ray" / NAME).glob("*/checkpoint_*/metrics.json")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before any checkpoint:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no checkpoint within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_ctrl_c_exits_130_names_the_interrupted_trials_and_the_same_command_resumes_them(
        scenes: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    ray_tmp = tempfile.mkdtemp(prefix="ri", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmp,
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path / "first.log"
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(_command(scenes, results), cwd=tmp_path, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                _first_checkpoint(results, proc, log)
                os.kill(proc.pid, signal.SIGINT)  # the driver only, as a terminal's Ctrl-C reaches it
                code = proc.wait(timeout=180)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        first = log.read_text()
        assert code == 130, first[-3000:]
        assert "Traceback" not in first, first[-3000:]
        board = pd.read_csv(results / NAME / "leaderboard.csv")
        stopped = board[board.status == "interrupted"]
        assert len(board) == 2 and len(stopped) >= 1, board[["trial_id", "status", "epochs_done"]]
        assert set(board.status) <= {"interrupted", "finished"}
        assert (stopped.epochs_done < 3).all()
        last = [line for line in first.splitlines() if line.strip()][-1]
        assert last.startswith(f"error: interrupted: {len(stopped)} trial(s) did not finish"), last
        assert all(t in last for t in stopped.trial_id) and "run the same command to resume them" in last
        assert "| interrupted |" in (results / NAME / "leaderboard.md").read_text()

        second = subprocess.run(_command(scenes, results), cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=300)
        shown = second.stdout[-3000:] + second.stderr[-3000:]
        assert second.returncode == 0, shown
        resumed = pd.read_csv(results / NAME / "leaderboard.csv")
        assert sorted(resumed.trial_id) == sorted(board.trial_id), shown  # the same trials, resumed
        assert (resumed.status == "finished").all() and (resumed.epochs_done == 3).all(), shown
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
