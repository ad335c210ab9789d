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
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from ray_cluster import Nodes, free_port, ray_env

from grid.synth import generate

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    address: str
    head_id: str
    gpu_node_id: str
    env: dict[str, str]
    logs: Path


@pytest.fixture
def two_node_cluster(tmp_path: Path):
    env = ray_env()
    nodes = Nodes(tmp_path / "logs")
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        head = nodes.start("head", ["--head", f"--port={port}", "--num-cpus=1", "--num-gpus=0",
                                    "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
                                    f"--dashboard-agent-listen-port={free_port()}"], env)
        nodes.wait_for_gcs(port, head)
        # Ray refuses --num-gpus 1 under CUDA_VISIBLE_DEVICES="" (the tests' CPU-only setting); without
        # it the GPU is logical here (trials hold it and train on the CPU) and real on a GPU machine.
        gpu_env = {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}
        nodes.start("gpu_node", [f"--address={address}", "--num-cpus=1", "--num-gpus=1",
                                 f"--dashboard-agent-listen-port={free_port()}"], gpu_env)
        found = nodes.alive(address, 2, env)
        if len(found) != 2:
            nodes.fail(f"expected 2 alive nodes, got {found}")
        gpu = [n["id"] for n in found if n["resources"].get("GPU", 0) == 1]
        head_ids = [n["id"] for n in found if n["resources"].get("GPU", 0) == 0]
        assert len(gpu) == 1 and len(head_ids) == 1, found
        yield Cluster(address=address, head_id=head_ids[0], gpu_node_id=gpu[0], env=env, logs=nodes.logs)
    finally:
        nodes.stop()


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
