"""Checkpoints inside an epoch: a trial stopped at any step (SIGKILL, or SIGTERM, which makes it
checkpoint at its next step and stop) resumes there and ends bit-identical to one never stopped;
mid-epoch checkpoints are for resuming, never scored."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from grid.cli.run import parse_args
from grid.experiment.prepare import prepare_bundle
from grid.experiment.run import run
from grid.synth import generate
from trainables.config import TrialConfig
from trainables.data import DatasetSpec
from trainables.loop import make_loaders, train_one_epoch
from trainables.models import build_model
from trainables.sampler import EpochSampler
from trainables.state import MID_EPOCH_KEY, TrialState

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=2)


@pytest.fixture(scope="module")
def bundle(scenes: Path, tmp_path_factory):
    return prepare_bundle(DatasetSpec(root=scenes), tmp_path_factory.mktemp("results"))[0]


# ---- in process: the state saved at a step, mid accumulation group, goes on exactly ------------

def _state(cfg: TrialConfig, bundle) -> TrialState:
    torch.manual_seed(cfg.seed)
    train_loader, _ = make_loaders(cfg, bundle)
    return TrialState.create(cfg, build_model(cfg.arch, size="tiny"), train_loader, CPU)


class SaveAt:
    """A checkpointer that saves the state (through torch.save, as a trial does) at one step."""

    def __init__(self, state: TrialState, epoch: int, step: int) -> None:
        self.state, self.at, self.saved = state, (epoch, step), None

    def due(self, done: int, n_steps: int) -> bool:
        return (self.state.epoch, done) == self.at

    def save(self) -> None:
        record = {"trial_config": {}, "image_size": [], "metrics": {"mid_epoch": True}, "weights": "random",
                  "provenance": {}}
        buffer = io.BytesIO()
        torch.save(self.state.state_dict(record), buffer)
        self.saved = buffer.getvalue()


def _epochs(state: TrialState, cfg: TrialConfig, checkpointer=None) -> list[float]:
    losses = []
    while state.epoch < cfg.epochs:
        losses.append(train_one_epoch(state, state.train_loader, cfg, CPU, checkpointer))
        state.epoch += 1
    return losses


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["plain", "ema"])
def test_a_state_saved_inside_an_epoch_resumes_bit_identical(bundle, ema: float) -> None:
    cfg = TrialConfig(arch="unet", epochs=2, batch_size=2, accum_steps=2, image_size=(24, 32), num_workers=0,
                      max_steps_per_epoch=5, augment="standard", schedule="cosine", ema=ema, seed=3, pretrained="no")
    straight = _state(cfg, bundle)
    saver = SaveAt(straight, epoch=1, step=3)  # epoch 1, after step 3: inside the second accumulation group
    straight_losses = _epochs(straight, cfg, saver)
    saved = torch.load(io.BytesIO(saver.saved), weights_only=True)
    mid = saved[MID_EPOCH_KEY]
    assert saved["epoch"] == 1 and mid["step"] == 3 and mid["loss_count"] == 3
    assert any(g is not None for g in mid["grads"])  # a group half accumulated

    # Another trial (other weights, other seed, a whole epoch already trained): the checkpoint
    # overrides all of it and the epoch goes on from step 3.
    resumed = _state(TrialConfig.from_dict({**cfg.to_dict(), "seed": 99}), bundle)
    _epochs(resumed, TrialConfig.from_dict({**cfg.to_dict(), "epochs": 1}))
    resumed.load_state_dict(saved)
    assert (resumed.epoch, resumed.progress.step) == (1, 3)
    resumed_losses = _epochs(resumed, cfg)
    assert resumed_losses == straight_losses[1:]  # the epoch's mean loss counts the steps before the stop
    for a, b in ((straight.model, resumed.model), (straight.eval_model, resumed.eval_model)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
    assert repr(straight.optimizer.state_dict()) == repr(resumed.optimizer.state_dict())
    assert straight.scheduler.state_dict() == resumed.scheduler.state_dict()


def test_the_order_and_each_samples_draws_do_not_depend_on_workers_or_the_offset(bundle) -> None:
    cfg = TrialConfig(arch="unet", batch_size=2, image_size=(24, 32), num_workers=0, augment="standard", seed=5)
    loader, _ = make_loaders(cfg, bundle)
    sampler = loader.sampler
    assert isinstance(sampler, EpochSampler) and len(loader) == len(bundle.train) // 2
    sampler.set_epoch(1)
    whole = list(loader)
    order = [i for b in whole for i in b["index"].tolist()]
    assert sorted(order) == list(range(len(order))) and order != sorted(order)  # each item once, shuffled
    sampler.set_epoch(1, offset=4)
    assert len(loader) == len(whole)  # the schedule's length does not move with the offset
    for a, b in zip(whole[2:], list(loader), strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
    sampler.set_epoch(2)
    assert [b["index"].tolist() for b in loader] != [b["index"].tolist() for b in whole]  # another epoch's order

    two = make_loaders(TrialConfig.from_dict({**cfg.to_dict(), "num_workers": 2}), bundle)[0]
    two.sampler.set_epoch(1, offset=2)
    torch.manual_seed(1234)  # the process's own random state plays no part
    for a, b in zip(whole[1:], list(two), strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])


def test_a_non_finite_loss_still_names_its_step(bundle) -> None:
    """The loss is read back every few steps, not every step: the error still names the step."""
    cfg = TrialConfig(arch="unet", epochs=1, batch_size=2, image_size=(24, 32), num_workers=0,
                      max_steps_per_epoch=4, seed=1, pretrained="no")
    state = _state(cfg, bundle)
    batches = list(state.train_loader)[:4]
    batches[2] = {**batches[2], "image": torch.full_like(batches[2]["image"], float("nan"))}
    with pytest.raises(FloatingPointError, match="non-finite training loss at epoch 0 step 2"):
        train_one_epoch(state, batches, cfg, CPU)


# ---- through Tune: SIGKILL and SIGTERM inside an epoch ---------------------------------------------

COMMON = ["--arch", "unet", "--set", "epochs=2", "--set", "max_steps_per_epoch=6", "--set", "accum_steps=2",
          "--set", "augment=standard", "--set", "checkpoint_steps=2", "--max-failures", "0"]
# --max-failures 0: a preemption (SIGTERM, a process or node that died) is retried all the same.


def _grid(scenes: Path, results: Path, name: str, *extra: str) -> Path:
    return run(parse_args(["--space", "smoke", "--data", str(scenes), "--results", str(results), "--name", name,
                           "--gpus-per-trial", "0", "--verbose", "0", *COMMON, *extra]))


def _trial(results: Path, name: str) -> tuple[Path, list[dict]]:
    (trial_dir,) = [p.parent for p in (results / "ray" / name).glob("*/params.json")]
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    return trial_dir, rows


def _final(trial_dir: Path) -> dict:
    last = max((p for p in trial_dir.glob("checkpoint_*") if (p / "metrics.json").is_file()), key=lambda p: p.name)
    return torch.load(last / "checkpoint.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def straight(ray_session, scenes: Path, tmp_path_factory) -> tuple[Path, list[dict]]:
    results = tmp_path_factory.mktemp("straight")
    _grid(scenes, results, "straight")
    return _trial(results, "straight")


def _assert_same_run(trial_dir: Path, rows: list[dict], straight: tuple[Path, list[dict]]) -> None:
    straight_dir, straight_rows = straight
    epochs = [r for r in rows if "epoch" in r]
    metrics = ("epoch", "train_loss", "si_rmse", "abs_rel", "rmse", "delta1")
    expected = [[r[m] for m in metrics] for r in straight_rows if "epoch" in r]
    assert [[r[m] for m in metrics] for r in epochs][-2:] == expected
    a, b = _final(straight_dir), _final(trial_dir)
    assert a["epoch"] == b["epoch"] == 2 and MID_EPOCH_KEY not in b
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), f"weight {key} differs after the resume"
    assert repr(a["optimizer"]) == repr(b["optimizer"])


def _board(results: Path, name: str) -> pd.Series:
    (row,) = pd.read_csv(results / name / "leaderboard.csv").to_dict("records")
    assert row["status"] == "finished" and row["epochs_done"] == 2
    assert (row["preemptions"], row["failures"]) == (1, 0)
    assert Path(row["checkpoint"]).parent.joinpath("metrics.json").is_file()  # a scored epoch's, never a mid-epoch one
    return pd.Series(row)


def test_a_trial_sigkilled_inside_an_epoch_resumes_there_exactly(ray_session, scenes: Path, tmp_path: Path,
                                                                  straight) -> None:
    """Killed at step 5 of epoch 1 (6 steps, checkpoints after steps 2 and 4): the retry starts
    at step 4, not at the epoch's start, and ends as the straight run did."""
    results = tmp_path / "results"
    _grid(scenes, results, "killed", "--set", "fault=unet:kill@1.5")
    trial_dir, rows = _trial(results, "killed")
    assert "Failure # 1" in (trial_dir / "error.txt").read_text()  # it really died
    mid = [(r["epoch_in_progress"], r["epoch_step"]) for r in rows if r.get("mid_epoch")]
    assert mid[:3] == [(0, 2), (0, 4), (1, 2)]
    # Reports 1-5: (0, 2), (0, 4), epoch 1, (1, 2), (1, 4). The retry (another process) goes on
    # from the 5th's checkpoint (Tune counts on from its iteration) and repeats no step.
    retry = [r for r in rows if r["pid"] != rows[0]["pid"]]
    assert retry[0]["training_iteration"] == 6 and not any(r.get("mid_epoch") for r in retry)
    _assert_same_run(trial_dir, rows, straight)
    _board(results, "killed")


def test_sigterm_checkpoints_at_the_next_step_and_the_retry_resumes_exactly(ray_session, scenes: Path,
                                                                            tmp_path: Path, straight) -> None:
    """SIGTERM at step 1 of epoch 1 (no scheduled checkpoint due before step 2): the trial writes
    a checkpoint after a later step, marked preempted, stops, and its retry ends as the straight run."""
    results = tmp_path / "results"
    _grid(scenes, results, "termed", "--set", "checkpoint_steps=0", "--set", "fault=unet:term@1.1")
    trial_dir, rows = _trial(results, "termed")
    (notice,) = [r for r in rows if r.get("preempted")]
    assert notice["mid_epoch"] and notice["epoch_in_progress"] == 1 and notice["epoch_step"] >= 2  # after the signal
    assert "TrialPreempted" in (trial_dir / "error.txt").read_text()
    _assert_same_run(trial_dir, rows, straight)
    _board(results, "termed")


# ---- the SIGTERM handler itself, in a plain process -----------------------------------------------

HANDLER = """
import os, signal, sys, time
from trainables.preemption import install, listening
assert install()
with listening() as notice:
    os.kill(os.getpid(), signal.SIGTERM)  # while a trial listens: only the notice
    while not notice.requested:
        time.sleep(0.01)
    print("noticed", flush=True)
    notice.handled = True  # as the trainable does once its checkpoint is written
print("still alive", flush=True)
os.kill(os.getpid(), signal.SIGTERM)  # nobody listening now: the handler before ours (the default: exit)
time.sleep(5)
print("not reached", flush=True)
"""


def test_sigterm_only_raises_the_notice_while_a_trial_listens() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", HANDLER], cwd=root, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    assert out.stdout.split() == ["noticed", "still", "alive"], out.stderr[-2000:]
    assert out.returncode == -15  # killed by SIGTERM, as without the handler


class _Metadata:
    """A local stand-in for GCE's and EC2's metadata servers: no notice for the first ``quiet``
    looks, then a preemption notice."""

    def __init__(self, quiet: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self
        self.looks, self.quiet = 0, quiet

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: str) -> None:
                self.send_response(code)
                self.end_headers()
                self.wfile.write(body.encode())

            def do_PUT(self) -> None:  # EC2's IMDSv2 token
                ok = self.path == "/latest/api/token" and self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
                self._send(200 if ok else 400, "token")

            def do_GET(self) -> None:
                server.looks += 1
                noticed = server.looks > server.quiet
                if self.path == "/computeMetadata/v1/instance/preempted" and self.headers["Metadata-Flavor"] == "Google":
                    self._send(200, "TRUE" if noticed else "FALSE")
                elif self.path == "/latest/meta-data/spot/instance-action" and self.headers["X-aws-ec2-metadata-token"] == "token":
                    self._send(200 if noticed else 404, '{"action": "terminate"}' if noticed else "not found")
                else:
                    self._send(403, "")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def __enter__(self) -> str:
        import threading

        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.mark.parametrize("cloud", ["gce", "ec2"])
def test_the_clouds_preemption_notice_raises_the_notice(cloud: str, monkeypatch) -> None:
    import threading

    from trainables.preemption import Notice, preempted_now, watch_metadata

    with _Metadata(quiet=2) as url:
        monkeypatch.setenv("DEPTH_GRID_METADATA_URL", url)
        notice, stop = Notice(), threading.Event()
        assert not preempted_now(cloud)  # the first look: nothing scheduled
        watch_metadata(cloud, notice, stop, every=0.01)  # returns once the notice came
        assert notice.requested
    monkeypatch.setenv("DEPTH_GRID_METADATA_URL", url)  # the server is gone: no notice, no error
    assert not preempted_now(cloud)


# ---- a node that goes away mid-trial, on a real multi-node Ray cluster on this machine ------------

def _mid_epoch_rows(storage: Path) -> list[dict]:
    rows = []
    for f in storage.rglob("result.json"):
        for line in f.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line being written
                continue
    return [r for r in rows if r.get("mid_epoch")]


@pytest.mark.slow
def test_a_trial_whose_node_is_stopped_resumes_on_another_node(scenes: Path, tmp_path: Path) -> None:
    """Head (no CPU: trials run on the workers) and two 1-CPU worker nodes; once the trial has
    written a mid-epoch checkpoint, its node is stopped as `ray stop` stops one (SIGTERM to the
    node's processes, then SIGKILL). The trial finishes on the other node, from a checkpoint,
    under --max-failures 0: one preemption, no failure."""
    import subprocess
    import sys
    import time

    from ray_cluster import Nodes, free_port, ray_env, stop_group

    env = ray_env()
    nodes = Nodes(tmp_path / "logs")
    port = free_port()
    address = f"127.0.0.1:{port}"
    storage, results = tmp_path / "storage", tmp_path / "results"
    try:
        head = nodes.start("head", ["--head", f"--port={port}", "--num-cpus=0", "--num-gpus=0", "--include-dashboard=false",
                                    f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"], env)
        nodes.wait_for_gcs(port, head)
        # One node at a time: two raylets starting at once on 2 cores can miss Ray's 30 s
        # registration window ("The current node timed out during startup"), seen 2 times in 5.
        workers = {}
        for want, name in enumerate(("node_a", "node_b"), start=2):
            workers[name] = nodes.start(name, [f"--address={address}", "--num-cpus=1", "--num-gpus=0",
                                               f"--resources={json.dumps({name: 1})}",
                                               f"--dashboard-agent-listen-port={free_port()}"], env)
            alive = nodes.alive(address, want, env)
        names = {n["id"]: name for n in alive for name in workers if n["resources"].get(name)}
        assert sorted(names.values()) == ["node_a", "node_b"], names
        cmd = [sys.executable, "-m", "grid.run", "--space", "smoke", "--arch", "unet", "--address", address,
               "--gpus-per-trial", "0", "--storage", str(storage), "--name", "nodeloss", "--data", str(scenes),
               "--results", str(results), "--verbose", "0", "--max-failures", "0", "--set", "epochs=2",
               "--set", "max_steps_per_epoch=6", "--set", "checkpoint_steps=2", "--set", "fault=sleep@0.5"]
        with open(tmp_path / "run.log", "w") as log:
            run = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (marks := _mid_epoch_rows(storage)):  # logged by the driver: the checkpoint is registered
            if run.poll() is not None or time.time() > deadline:
                run.kill()
                nodes.fail(f"no mid-epoch checkpoint:\n{(tmp_path / 'run.log').read_text()[-3000:]}")
            time.sleep(0.2)
        first = names[marks[0]["node_id"]]
        stop_group(workers[first], first)
        assert run.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-4000:]
    finally:
        nodes.stop()
    (row,) = pd.read_csv(results / "nodeloss" / "leaderboard.csv").to_dict("records")
    assert row["status"] == "finished" and row["epochs_done"] == 2
    assert (row["preemptions"], row["failures"]) == (1, 0)
    reports = [json.loads(line) for f in storage.rglob("result.json") for line in f.read_text().splitlines()]
    later = [r for r in reports if names[r["node_id"]] != first]
    assert later and later[-1] == reports[-1] and later[-1]["epoch"] == 2  # it finished on the other node,
    assert later[0]["training_iteration"] >= 2  # restored from a (mid-epoch) checkpoint, not from the start
