"""``--log-to mlflow`` against a real MLflow tracking server on loopback (sqlite backend, its own
artifact store), started and stopped here; the runs are read back through MLflow's client.
``--log-to`` refusals (a missing package, a server that does not answer) come before Ray."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from grid.cli import command
from grid.synth import generate

START_TIMEOUT_S = 180  # a cold mlflow server creates its tables first: tens of seconds on a busy machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"OK"
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """The server and its workers (one process group): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed (pip install 'depth-grid[mlflow]')")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + START_TIMEOUT_S
        while not _answers(url):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=1)


@pytest.mark.slow
def test_log_to_mlflow_records_every_trial_params_metrics_and_best_checkpoint(
        ray_session, mlflow_server: str, scenes: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from grid import run_grid

    results = tmp_path / "results"
    board, exp = run_grid("smoke", data=scenes, results=results, gpus_per_trial=0, verbose=0, name="tracked",
                          log_to="mlflow", tracking_uri=mlflow_server, set={"epochs": 2})
    assert (board.status == "finished").all(), board[["arch", "status", "error"]]

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(board) == 2
    for row in board.itertuples():
        (run,) = [r for r in runs if row.trial_id in r.info.run_name]
        assert run.info.status == "FINISHED"
        (trial_dir,) = [d for d in (results / "ray" / "tracked").iterdir() if row.trial_id in d.name]
        params = json.loads((trial_dir / "params.json").read_text())
        reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        # Every trial setting as a param (nested ones flattened, as Tune logs them).
        assert run.data.params["arch"] == params["arch"] == row.arch
        assert float(run.data.params["lr"]) == params["lr"] and float(run.data.params["lam"]) == params["lam"]
        assert run.data.params["model_kwargs/size"] == "tiny"
        assert run.data.tags["depth_grid.study"] == "tracked"
        # The final si_rmse, and one value per epoch.
        assert run.data.metrics["si_rmse"] == pytest.approx(reports[-1]["si_rmse"], rel=1e-12)
        history = client.get_metric_history(run.info.run_id, "si_rmse")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            [r["si_rmse"] for r in reports], rel=1e-12)
        # The best checkpoint as the run's artifact: the leaderboard row's, byte for byte.
        files = {a.path for a in client.list_artifacts(run.info.run_id, "best_checkpoint")}
        assert {"best_checkpoint/checkpoint.pt", "best_checkpoint/metrics.json"} <= files
        local = client.download_artifacts(run.info.run_id, "best_checkpoint/checkpoint.pt", str(tmp_path))
        assert Path(local).read_bytes() == Path(row.checkpoint).read_bytes()


def test_log_to_refusals_come_before_ray(tmp_path: Path, capsys) -> None:
    main = command("run")
    closed = f"http://127.0.0.1:{_free_port()}"
    assert main(["--space", "smoke", "--results", str(tmp_path), "--log-to", "mlflow", "--tracking-uri", closed]) == 2
    assert f"--tracking-uri {closed}: no MLflow server answers" in capsys.readouterr().err
    env = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        assert main(["--space", "smoke", "--results", str(tmp_path), "--log-to", "tensorboard,mlflow"]) == 2
        assert "--log-to mlflow needs a tracking server" in capsys.readouterr().err
    finally:
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env
    assert main(["--space", "smoke", "--results", str(tmp_path), "--log-to", "neptune"]) == 2
    assert "--log-to must be one of tensorboard, mlflow, wandb" in capsys.readouterr().err
    if importlib.util.find_spec("wandb") is None:
        assert main(["--space", "smoke", "--results", str(tmp_path), "--log-to", "wandb"]) == 2
        assert "pip install 'depth-grid[wandb]'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
