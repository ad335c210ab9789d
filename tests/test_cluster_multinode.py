"""A real two-node Ray cluster on this machine, started like `ray up` starts one: a CPU-only head
(`ray start --head`) and a node with one logical GPU (`ray start --address ... --num-gpus 1`).
`python -m grid.run --address` must run every trial on the GPU node and write the leaderboard.

Everything runs in subprocesses: this pytest process never calls `ray.init`, so the session-scoped
`ray_session` fixture is untouched. The nodes run `ray start --block` in their own process groups
and are stopped by signalling those groups (not `ray stop`, which would stop every Ray on the
machine, other people's included).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_or_skip

from grid.synth import generate

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
# Prints the cluster's nodes once `want` of them are alive (run in a subprocess, not here).
NODES = """
import json, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
deadline = time.time() + 120
while True:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) >= int(sys.argv[2]) or time.time() > deadline:
        break
    time.sleep(1)
print(json.dumps([{"id": n["NodeID"], "resources": n["Resources"]} for n in nodes]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    address: str
    head_id: str
    gpu_node_id: str
    env: dict[str, str]
    logs: Path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _stop(proc: subprocess.Popen, name: str) -> None:
    """SIGTERM the node's process group (what `ray stop` sends), SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait(timeout=5)
                return
            proc.poll()
            time.sleep(0.5)
    raise RuntimeError(f"{name} (process group {proc.pid}) did not stop")


def _leftovers(temp: str) -> list[int]:
    """Processes whose command line names this cluster's temp dir (left behind: ours alone)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and temp in (d / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


@pytest.fixture
def two_node_cluster(tmp_path: Path):
    if not Path(RAY).exists():
        require_or_skip(f"the ray command is not beside {sys.executable}")
    env = _env()
    temp = tempfile.mkdtemp(prefix="rm", dir="/tmp")  # short: Ray's socket paths are length-limited
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus=1", f"--temp-dir={temp}",
              "--object-store-memory=100000000", "--disable-usage-stats"]
    nodes: list[tuple[str, subprocess.Popen]] = []

    def start(name: str, args: list[str], node_env: dict[str, str]) -> None:
        with open(logs / f"{name}.log", "w") as log:
            nodes.append((name, subprocess.Popen([RAY, "start", *args, *common], env=node_env, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)))

    def fail(why: str) -> None:
        text = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
        pytest.fail(f"{why}\n{text}")

    try:
        start("head", ["--head", f"--port={port}", "--num-gpus=0", "--include-dashboard=false",
                       f"--ray-client-server-port={free_port()}",
                       f"--dashboard-agent-listen-port={free_port()}"], env)
        deadline = time.time() + 90
        while True:  # the head's GCS accepts connections
            if nodes[0][1].poll() is not None:
                fail("the head node exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    fail("the head node did not start")
                time.sleep(1)
        # Ray refuses --num-gpus 1 under CUDA_VISIBLE_DEVICES="" (the tests' CPU-only setting); without
        # it the GPU is logical here (trials hold it and train on the CPU) and real on a GPU machine.
        gpu_env = {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}
        start("gpu_node", [f"--address={address}", "--num-gpus=1",
                           f"--dashboard-agent-listen-port={free_port()}"], gpu_env)
        out = subprocess.run([sys.executable, "-c", NODES, address, "2"], env=env, capture_output=True,
                             text=True, timeout=180)
        if out.returncode != 0:
            fail(f"listing nodes failed:\n{out.stderr[-3000:]}")
        found = json.loads(out.stdout.strip().splitlines()[-1])
        if len(found) != 2:
            fail(f"expected 2 alive nodes, got {found}")
        gpu = [n["id"] for n in found if n["resources"].get("GPU", 0) == 1]
        head = [n["id"] for n in found if n["resources"].get("GPU", 0) == 0]
        assert len(gpu) == 1 and len(head) == 1, found
        yield Cluster(address=address, head_id=head[0], gpu_node_id=gpu[0], env=env, logs=logs)
    finally:
        errors = []
        for name, proc in reversed(nodes):
            try:
                _stop(proc, name)
            except RuntimeError as e:
                errors.append(str(e))
        time.sleep(1)
        left = _leftovers(temp)
        for pid in left:  # a Ray process that left the node's process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            errors.append(f"Ray processes outlived their node: {left}")
        shutil.rmtree(temp, ignore_errors=True)
        assert not errors, errors


def test_grid_runs_its_trials_on_the_gpu_node(two_node_cluster: Cluster, tmp_path: Path) -> None:
    cluster = two_node_cluster
    # Generated scenes in the competition (cil) layout: random images would all land in one
    # near-duplicate cluster, leaving the split no validation set.
    data = generate(tmp_path / "cil", scenes=5, views=3, size=(40, 56), seed=1)
    storage = tmp_path / "shared-storage"  # the bucket: one path every node writes to
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "grid.run", "--space", "smoke", "--address", cluster.address,
           "--gpus-per-trial", "1", "--storage", str(storage), "--name", "multinode",
           "--data", str(data), "--format", "cil", "--results", str(results), "--verbose", "0"]
    run = subprocess.run(cmd, env=cluster.env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"grid.run failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"

    reports = [json.loads(line) for f in storage.rglob("result.json")
               for line in f.read_text().splitlines() if line.strip()]
    trials = {r["trial_id"] for r in reports}
    assert len(trials) == 2, f"smoke has two trials, storage holds {sorted(trials)}"
    nodes = {r["node_id"] for r in reports}
    assert nodes == {cluster.gpu_node_id}, (
        f"trials ran on {nodes}; GPU node {cluster.gpu_node_id}, head {cluster.head_id}")
    assert all(r["gpu_ids"] for r in reports), "a trial held no GPU"

    board = results / "multinode" / "leaderboard.csv"
    assert board.is_file(), run.stdout[-3000:]
    rows = list(csv.DictReader(board.open()))
    assert {r["trial_id"] for r in rows} == trials
    assert all(r["status"] == "finished" for r in rows), rows
    assert all(r["checkpoint"].startswith(str(storage)) for r in rows), rows
    record = json.loads((results / "multinode" / "experiment.json").read_text())
    assert record["storage"] == str(storage)
