"""The README's cluster command on an autoscaling cluster, on one machine, with Ray's own fake
multi-node provider: a CPU-only head and `cluster.yaml`'s GPU worker types at `min_workers: 0`.
With no GPU in the cluster at start-up and no `--gpus-per-trial`, grid.run must still ask for one
GPU per trial (the autoscaler can add GPU nodes), so the autoscaler adds GPU workers and every
trial runs on one of them. The same command with `--gpus-per-trial 2`, which no node type has,
fails at once and writes nothing.

The autoscaling config is written here from cluster.yaml's node types: names, GPU and
`accelerator_type:*` resources and `max_workers` kept, CPUs scaled down to fit 2 cores (head 1,
workers 1), the head renamed `ray.head.default` (the fake provider's fixed head type). The head is
`ray start --head --autoscaling-config=...` as under `ray up` (autoscaler v1), with
`RAY_FAKE_CLUSTER=1`; the provider starts worker nodes as local processes with logical GPUs
(trials hold them and train on the CPU). `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps every node
address on loopback.

The command is read from the README and changed only where this machine differs: local shared
storage for `gs://BUCKET/depth-grid`, generated NYU-like pairs (480x640 RGB + 8-bit PNG depth) for
`~/data/nyu`, `--address auto` pointed at the fake cluster with RAY_ADDRESS, and, to keep it
small on 2 cores, `--space smoke` (overriding `all_models`) and `--results` in a temp folder.

`ray.cluster_utils.AutoscalingCluster` is not used: its start() runs `ray stop --force`, which
stops every Ray on the machine.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from ray_cluster import Nodes, free_port, ray_env

from grid.synth import generate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HEAD_TYPE = "ray.head.default"  # the fake provider's head node type, whatever the config says


def readme_grid_command() -> list[str]:
    """`python -m grid.run ...` of the README's `ray exec cluster.yaml --tmux "..."` line."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Running the grid on a cloud GPU cluster"):]
    section = section[:section.find("\n## ", 1)]
    (line,) = [ln for ln in section.splitlines() if ln.startswith('ray exec cluster.yaml --tmux "')]
    inner = shlex.split(line)[-1]  # cd ~/depth-grid && python -m grid.run ...
    (cmd,) = [part.strip() for part in inner.split("&&") if part.strip().startswith("python -m grid.run")]
    return shlex.split(cmd)


def fake_autoscaling_config(cluster_yaml: Path, gcs_address: str) -> dict:
    src = yaml.safe_load(cluster_yaml.read_text())
    head = src["available_node_types"][src["head_node_type"]]
    types = {HEAD_TYPE: {"resources": {**head["resources"], "CPU": 1}, "node_config": {}, "max_workers": 0}}
    for name, nt in src["available_node_types"].items():
        if name != src["head_node_type"]:
            assert nt["min_workers"] == 0 and nt["resources"].get("GPU", 0) > 0, (name, nt)
            types[name] = {"min_workers": 0, "max_workers": nt["max_workers"], "node_config": {},
                           # object_store_memory: the fake provider's setting for the node's store.
                           "resources": {**nt["resources"], "CPU": 1, "object_store_memory": 100_000_000}}
    commands = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands")
    return {
        "cluster_name": src["cluster_name"], "max_workers": src["max_workers"],
        "upscaling_speed": src["upscaling_speed"], "idle_timeout_minutes": src["idle_timeout_minutes"],
        "docker": {}, "auth": {},
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": types, "head_node_type": HEAD_TYPE,
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], **{c: [] for c in commands},
    }


def nyu_like_pairs(root: Path, scale: float) -> Path:
    """Generated scenes as NYU's pairs layout: 480x640 RGB and 8-bit PNG depth (metres * scale).
    Generated, not random: random images would all land in one near-duplicate cluster, leaving
    the split no validation set."""
    cil = generate(root / "cil", scenes=5, views=3, size=(480, 640), seed=1)
    (root / "nyu" / "rgb").mkdir(parents=True)
    (root / "nyu" / "depth").mkdir()
    lines = []
    for i, rgb in enumerate(sorted(cil.glob("*_rgb.png"))):
        depth = np.load(str(rgb).replace("_rgb.png", "_depth.npy"))
        (root / "nyu" / f"rgb/{i:04d}.png").write_bytes(rgb.read_bytes())
        Image.fromarray(np.clip(np.round(depth * scale), 1, 255).astype(np.uint8)).save(root / "nyu" / f"depth/{i:04d}.png")
        lines.append(f"rgb/{i:04d}.png depth/{i:04d}.png")
    (root / "nyu" / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root / "nyu"


def test_readme_cluster_command_makes_the_autoscaler_add_gpu_workers(tmp_path: Path) -> None:
    readme = readme_grid_command()
    assert readme[:3] == ["python", "-m", "grid.run"] and "--gpus-per-trial" not in readme, readme
    opt = dict(zip(readme[3::2], readme[4::2], strict=True))
    assert opt["--address"] == "auto" and opt["--storage"].startswith("gs://") and opt["--format"] == "pairs", opt
    storage, results = tmp_path / "shared-storage", tmp_path / "results"  # storage: the bucket
    data = nyu_like_pairs(tmp_path / "data", float(opt["--depth-scale"]))
    local = {opt["--storage"]: str(storage), opt["--data"]: str(data)}
    cmd = [sys.executable, "-m", "grid.run", *[local.get(t, t) for t in readme[3:]],
           "--space", "smoke", "--results", str(results)]

    nodes = Nodes(tmp_path / "logs")
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = tmp_path / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(fake_autoscaling_config(ROOT / "cluster.yaml", address), sort_keys=False))
    env = {**ray_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    # No CUDA_VISIBLE_DEVICES="" on the head: its monitor starts the GPU workers, and Ray refuses
    # logical GPUs under it.
    head_env = {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}
    head_env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    try:
        head = nodes.start("head", ["--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                                    f"--autoscaling-config={config}", "--num-cpus=1", "--num-gpus=0",
                                    "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
                                    f"--dashboard-agent-listen-port={free_port()}"], head_env)
        nodes.wait_for_gcs(port, head)
        before = nodes.alive(address, 1, env)
        assert len(before) == 1 and before[0]["resources"].get("GPU", 0) == 0, before
        head_id = before[0]["id"]

        # Two GPUs per trial: no node has them and no node type can add them: refused at once.
        refused = subprocess.run([*cmd[:-1], str(tmp_path / "refused"), "--gpus-per-trial", "2"],
                                 env={**env, "RAY_ADDRESS": address}, cwd=tmp_path, capture_output=True,
                                 text=True, timeout=300)
        assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
        assert "--gpus-per-trial 2: no node has or can get 2 GPUs" in refused.stderr, refused.stderr
        assert "gpu_t4_spot (1 GPU per node" in refused.stderr and not (tmp_path / "refused").exists()

        run = subprocess.run(cmd, env={**env, "RAY_ADDRESS": address}, cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
        out = f"{run.stdout[-5000:]}\n{run.stderr[-5000:]}"
        (nodes.logs / "grid-run.log").write_text(run.stdout + run.stderr)
        if run.returncode != 0:
            nodes.fail(f"grid.run failed:\n{out}")
        after = nodes.alive(address, 2, env)
    finally:
        nodes.stop()

    gpu_nodes = {n["id"] for n in after if n["resources"].get("GPU", 0) > 0}
    assert gpu_nodes and head_id not in gpu_nodes, after
    # The default accelerator is the cheapest type cluster.yaml defines: no P100 node is added.
    types = {k for n in after for k in n["resources"] if k.startswith("accelerator_type:")}
    assert types == {"accelerator_type:T4"}, after
    (chose,) = re.findall(r"^Accelerator: .*$", run.stdout, flags=re.M)
    assert chose.startswith("Accelerator: T4 (the cheapest type the cluster has or can add (T4 $0.14/h, P100"), chose
    # Printed before any trial: how many GPUs and why, naming the node types it can add.
    (said,) = re.findall(r"^GPUs per trial: .*$", run.stdout, flags=re.M)
    assert said.startswith("GPUs per trial: 1 (cluster has 0 GPUs now;") and "gpu_t4_spot" in said, said
    assert run.stdout.index("GPUs per trial") < run.stdout.index("Split ("), out
    # The split's embeddings were computed by a task on a GPU worker, not on the CPU head.
    (split_node,) = re.findall(r"^Split: embeddings computed on GPU node (\w+)$", run.stdout, flags=re.M)
    assert split_node in gpu_nodes, (split_node, gpu_nodes)

    reports = [json.loads(line) for f in storage.rglob("result.json")
               for line in f.read_text().splitlines() if line.strip()]
    trials = {r["trial_id"] for r in reports}
    assert len(trials) == 2, f"smoke has two trials, storage holds {sorted(trials)}"
    assert {r["node_id"] for r in reports} <= gpu_nodes, (reports, gpu_nodes, head_id)
    assert all(r["gpu_ids"] for r in reports), "a trial held no GPU"

    exp = results / "smoke"
    record = json.loads((exp / "experiment.json").read_text())
    assert record["gpus_per_trial"] == 1 and "gpu_t4_spot" in record["gpu_rule"], record
    assert record["accelerator"] == "T4", record
    rows = list(csv.DictReader((exp / "leaderboard.csv").open()))
    assert {r["trial_id"] for r in rows} == trials
    assert all(r["status"] == "finished" and float(r["gpu_hours"]) > 0 for r in rows), rows
