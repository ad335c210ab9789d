"""The README's cloud flow on one machine: `depth-grid pack` into a bucket, then the README's
cluster command on an autoscaling cluster that starts with no GPU worker, reading the data and
keeping its record in the bucket; the driver killed, the same command on a fresh cluster (a new
head, new nodes, an empty `results/`) resumes from the bucket without computing the split again;
`depth-grid predict --experiment s3://...` writes the maps the local record gives, `depth-grid
leaderboard s3://...` reads the record, and other settings under the same name are refused.

The bucket is a real S3-protocol server on loopback (moto, `tests/s3_server.py`), logging each
request with its access key. The cluster is Ray's own fake multi-node provider: a CPU-only head
and `cluster.yaml`'s GPU worker types at `min_workers: 0`. With no GPU in the cluster at start-up
and no `--gpus-per-trial`, grid.run must still ask for one GPU per trial (the autoscaler can add
GPU nodes), so the autoscaler adds GPU workers and every trial runs on one of them. The same
command with `--gpus-per-trial 2`, which no node type has, fails at once and writes nothing.

A fake worker node is a set of local processes on this machine; `NODE_SITE` (a `sitecustomize`
on their path) gives each node what a cloud node has of its own: a disk for the depth-grid cache,
`TORCH_HOME` and `HF_HOME` (with the weights `cluster.yaml`'s setup step fetches), and an access
key, which stands for the node's address in the bucket's access log.

The autoscaling config is written here from cluster.yaml's node types: names, GPU and
`accelerator_type:*` resources and `max_workers` kept, CPUs scaled down to fit 2 cores (head 1,
workers 1), the head renamed `ray.head.default` (the fake provider's fixed head type). The head is
`ray start --head --autoscaling-config=...` as under `ray up` (autoscaler v1), with
`RAY_FAKE_CLUSTER=1`; the provider starts worker nodes as local processes with logical GPUs
(trials hold them and train on the CPU). `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps every node
address on loopback.

The commands are read from the README and changed only where this machine differs: the moto
bucket `s3://bucket` for `gs://BUCKET`, generated NYU-like pairs (480x640 RGB + 8-bit PNG depth)
for `~/data/nyu`, `--address auto` pointed at the fake cluster with RAY_ADDRESS, and, to keep it
small on 2 cores, `--space smoke` (overriding `all_models`), `--results` in a temp folder, and
four epochs of slowed steps (so the driver is killed while trials run).

`ray.cluster_utils.AutoscalingCluster` is not used: its start() runs `ray stop --force`, which
stops every Ray on the machine.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from ray_cluster import Nodes, free_port, ray_env
from s3_server import S3Server

from grid.synth import generate
from trainables import weights

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HEAD_TYPE = "ray.head.default"
EPOCHS = 4  # the flow's trials: long enough for the driver to be killed between two of their epochs  # the fake provider's head node type, whatever the config says


def readme_cluster_commands() -> tuple[list[str], list[str]]:
    """The README's `depth-grid pack ...` line and the `python -m grid.run ...` of its
    `ray exec cluster.yaml --tmux "..."` line."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Running the grid on a cloud GPU cluster"):]
    section = section[:section.find("\n## ", 1)]
    (pack,) = [shlex.split(ln) for ln in section.splitlines() if ln.startswith("depth-grid pack ")]
    (line,) = [ln for ln in section.splitlines() if ln.startswith('ray exec cluster.yaml --tmux "')]
    inner = shlex.split(line)[-1]  # cd ~/depth-grid && python -m grid.run ...
    (cmd,) = [part.strip() for part in inner.split("&&") if part.strip().startswith("python -m grid.run")]
    return pack, shlex.split(cmd)


NODE_SITE = """
import os, shutil
_node = os.environ.get("RAY_CLOUD_INSTANCE_ID")  # set by Ray's fake provider on its worker nodes only
_disks = os.environ.get("FLOW_NODE_DISKS")
if _node and _disks:
    _disk = os.path.join(_disks, _node[-5:])
    os.environ.update(DEPTH_GRID_CACHE_DIR=_disk + "/cache", TORCH_HOME=_disk + "/torch", HF_HOME=_disk + "/hf",
                      AWS_ACCESS_KEY_ID=os.path.basename(_disks) + "-node" + _node[-5:])
    _weights = os.path.join(_disk, "torch", "hub", "checkpoints", os.path.basename(os.environ["FLOW_WEIGHTS"]))
    if not os.path.exists(_weights):  # cluster.yaml's setup step, `depth-grid weights fetch`
        os.makedirs(os.path.dirname(_weights), exist_ok=True)
        shutil.copyfile(os.environ["FLOW_WEIGHTS"], _weights + f".{os.getpid()}")
        os.replace(_weights + f".{os.getpid()}", _weights)
"""


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


@contextmanager
def autoscaling_cluster(root: Path, env: dict[str, str]) -> Iterator[tuple[Nodes, str]]:
    """A head with cluster.yaml's node types under Ray's fake autoscaling provider: ``(nodes, address)``."""
    nodes = Nodes(root / "logs")
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = root / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(fake_autoscaling_config(ROOT / "cluster.yaml", address), sort_keys=False))
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
        yield nodes, address
    finally:
        nodes.stop()


def bucket_keys(server: S3Server, prefix: str) -> list[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket="bucket", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def bucket_object(server: S3Server, key: str) -> bytes:
    return server.client().get_object(Bucket="bucket", Key=key)["Body"].read()


def snapshot_epochs(server: S3Server) -> dict[str, int]:
    """Each trial's last reported epoch in Tune's newest experiment snapshot in the bucket (what
    a restore reads: a checkpoint reported after it is not known to the restored experiment)."""
    states = sorted(k for k in bucket_keys(server, "depth-grid/smoke/") if "/experiment_state-" in k)
    if not states:
        return {}
    state = json.loads(bucket_object(server, states[-1]))
    trials = [(json.loads(t), json.loads(run)) for t, run in state["trial_data"]]
    return {t["trial_id"]: run["last_result"]["epoch"] for t, run in trials if "epoch" in (run["last_result"] or {})}


def kill_mid_grid(driver: subprocess.Popen, server: S3Server, nodes: Nodes) -> tuple[str, int]:
    """SIGKILL the driver's process group once Tune's snapshot in the bucket has a trial between
    epochs (checkpointed, not finished); that trial's id and epoch."""
    deadline = time.time() + 400
    while not (under_way := {t: e for t, e in snapshot_epochs(server).items() if 1 <= e < EPOCHS}):
        if driver.poll() is not None or time.time() > deadline:
            nodes.fail(f"no snapshot showed a trial between epochs while the driver ran (exit {driver.poll()})")
        time.sleep(0.3)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    return min(under_way.items())


def test_readme_cloud_flow_packs_runs_resumes_and_predicts_from_the_bucket(tmp_path: Path) -> None:
    pack_line, readme = readme_cluster_commands()
    assert readme[:3] == ["python", "-m", "grid.run"] and "--gpus-per-trial" not in readme, readme
    opt = dict(zip(readme[3::2], readme[4::2], strict=True))
    packed = dict(zip(pack_line[2::2], pack_line[3::2], strict=True))
    assert opt["--address"] == "auto" and opt["--storage"].startswith("gs://BUCKET/"), opt
    assert packed["--out"] == opt["--data"] and opt["--data"].startswith("gs://BUCKET/"), (packed, opt)
    assert "depth-grid weights fetch" in (ROOT / "cluster.yaml").read_text()  # what NODE_SITE copies per node
    source_weights = weights.mobilenet_v2_weights_path()
    assert source_weights.is_file(), f"run `depth-grid weights fetch` first ({source_weights})"

    (tmp_path / "moto").mkdir()
    (site := tmp_path / "site").mkdir()
    (site / "sitecustomize.py").write_text(NODE_SITE)
    data = nyu_like_pairs(tmp_path / "data", float(packed["--depth-scale"]))
    server = S3Server(tmp_path / "moto", keys=True)
    try:
        server.bucket("bucket")
        local = {"gs://BUCKET": "s3://bucket", "~/data/nyu": str(data)}

        def here(token: str) -> str:
            for cloud, mine in local.items():
                token = token.replace(cloud, mine) if token.startswith(cloud) else token
            return token

        # TUNE_GLOBAL_CHECKPOINT_S: Tune snapshots the experiment every second, not every 10+ s, so
        # the driver is killed while a snapshot shows a trial between epochs (test timing only).
        env = {**ray_env(), **server.env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "HF_HUB_OFFLINE": "1",
               "TUNE_GLOBAL_CHECKPOINT_S": "1",
               "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "FLOW_WEIGHTS": str(source_weights)}
        laptop = {**env, "DEPTH_GRID_CACHE_DIR": str(tmp_path / "laptop-cache")}
        depth_grid = str(Path(sys.executable).with_name("depth-grid"))
        # --shard-mb 1: several shards of these 15 pairs, so "each shard once per node" says something.
        pack = subprocess.run([depth_grid, *map(here, pack_line[1:]), "--shard-mb", "1"], env=laptop,
                              capture_output=True, text=True, timeout=300)
        assert pack.returncode == 0, pack.stdout + pack.stderr
        shards = [k for k in bucket_keys(server, "nyu-packed/") if k.endswith(".tar")]
        assert len(shards) >= 3, shards

        cmd = [sys.executable, "-m", "grid.run", *map(here, readme[3:]), "--space", "smoke",
               "--set", f"epochs={EPOCHS}", "--set", "fault=sleep@0.4"]
        disks = tmp_path / "disks"

        # The first cluster: the run starts from zero GPU workers, and its driver is killed mid-grid.
        head1 = {**env, "FLOW_NODE_DISKS": str(disks / "c1"), "DEPTH_GRID_CACHE_DIR": str(disks / "head1")}
        with autoscaling_cluster(tmp_path / "c1", head1) as (nodes, address):
            before = nodes.alive(address, 1, head1)
            assert len(before) == 1 and before[0]["resources"].get("GPU", 0) == 0, before
            # Two GPUs per trial: no node has them and no node type can add them: refused at once.
            refused = subprocess.run([*cmd, "--results", str(tmp_path / "refused"), "--gpus-per-trial", "2"],
                                     env={**head1, "RAY_ADDRESS": address}, cwd=tmp_path, capture_output=True,
                                     text=True, timeout=300)
            assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
            assert "--gpus-per-trial 2: no node has or can get 2 GPUs" in refused.stderr, refused.stderr
            assert "gpu_t4_spot (1 GPU per node" in refused.stderr and not (tmp_path / "refused").exists()

            with open(nodes.logs / "grid-run-1.log", "w") as log:
                driver = subprocess.Popen([*cmd, "--results", str(tmp_path / "results1")], cwd=tmp_path,
                                          env={**head1, "RAY_ADDRESS": address}, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
                killed, at_epoch = kill_mid_grid(driver, server, nodes)
            first = (nodes.logs / "grid-run-1.log").read_text()
            gpu_nodes1 = {n["id"] for n in nodes.alive(address, 2, head1) if n["resources"].get("GPU", 0) > 0}
        # The split's embeddings were computed by a task on a GPU worker, not on the CPU head.
        (split_node,) = re.findall(r"^Split: embeddings computed on GPU node (\w+)$", first, flags=re.M)
        assert split_node in gpu_nodes1, (split_node, gpu_nodes1)
        assert "depth-grid/smoke/split.json" in bucket_keys(server, "depth-grid/smoke/")

        # A fresh cluster (new head, new nodes, new disks) and an empty results/: the same command.
        head2 = {**env, "FLOW_NODE_DISKS": str(disks / "c2"), "DEPTH_GRID_CACHE_DIR": str(disks / "head2")}
        results = tmp_path / "results2"
        with autoscaling_cluster(tmp_path / "c2", head2) as (nodes, address):
            run = subprocess.run([*cmd, "--results", str(results)], env={**head2, "RAY_ADDRESS": address},
                                 cwd=tmp_path, capture_output=True, text=True, timeout=600)
            (nodes.logs / "grid-run-2.log").write_text(run.stdout + run.stderr)
            if run.returncode != 0:
                nodes.fail(f"the resumed grid.run failed:\n{run.stdout[-5000:]}\n{run.stderr[-5000:]}")
            after = nodes.alive(address, 2, head2)

        out = run.stdout
        assert "Resuming experiment s3://bucket/depth-grid/smoke" in out, out[-3000:]
        assert "the record's in s3://bucket/depth-grid/smoke" in out and "embeddings computed" not in out, out
        split_id = re.compile(r"^Split \(\w+\): .* \(([\w-]+)\)", flags=re.M)
        assert split_id.findall(out) == split_id.findall(first) != [], (out, first)  # the same split
        gpu_nodes = {n["id"] for n in after if n["resources"].get("GPU", 0) > 0}
        # The default accelerator is the cheapest type cluster.yaml defines: no P100 node is added.
        assert {k for n in after for k in n["resources"] if k.startswith("accelerator_type:")} == {"accelerator_type:T4"}
        (chose,) = re.findall(r"^Accelerator: .*$", out, flags=re.M)
        assert chose.startswith("Accelerator: T4 (the cheapest type the cluster has or can add (T4 $0.14/h, P100"), chose
        # Printed before any trial: how many GPUs and why, naming the node types it can add.
        (said,) = re.findall(r"^GPUs per trial: .*$", out, flags=re.M)
        assert said.startswith("GPUs per trial: 1 (cluster has 0 GPUs now;") and "gpu_t4_spot" in said, said

        reports = [json.loads(line) for key in bucket_keys(server, "depth-grid/smoke/") if key.endswith("/result.json")
                   for line in bucket_object(server, key).decode().splitlines()
                   if line.strip()]
        trials = {r["trial_id"] for r in reports}
        assert len(trials) == 2, f"smoke has two trials, the bucket holds {sorted(trials)}"
        assert all(r["gpu_ids"] for r in reports if "epoch" in r), "a trial held no GPU"
        # (the fake provider numbers each cluster's nodes from 1: the two clusters' ids overlap)
        assert {r["node_id"] for r in reports} <= gpu_nodes1 | gpu_nodes, (reports, gpu_nodes1, gpu_nodes)

        exp = results / "smoke"
        record = json.loads((exp / "experiment.json").read_text())
        assert record["gpus_per_trial"] == 1 and "gpu_t4_spot" in record["gpu_rule"] and record["accelerator"] == "T4"
        rows = list(csv.DictReader((exp / "leaderboard.csv").open()))
        assert {r["trial_id"] for r in rows} == trials
        assert all(r["status"] == "finished" and int(r["epochs_done"]) == EPOCHS and float(r["gpu_hours"]) > 0 for r in rows), rows

        # The trial the driver was killed under went on from the checkpoint Tune's snapshot knew.
        resumed = [r["resumed_at_epoch"] for r in reports if r["trial_id"] == killed and "epoch" in r]
        assert at_epoch in resumed, (killed, at_epoch, resumed)

        # Each shard was fetched at most once per node (an access key per node), by worker nodes
        # only, and sits in those nodes' own caches; the heads and the laptop fetched none.
        fetched = server.gets_by_key("/bucket/nyu-packed/shard-")
        assert fetched and max(fetched.values()) == 1, fetched
        readers = {key for key, _ in fetched}
        assert all(key.startswith(("c1-node", "c2-node")) for key in readers), readers
        assert any(key.startswith("c2-node") for key in readers), "no node of the fresh cluster read the data"
        for key in readers:
            cluster, node = key.split("-node")
            cached = {p.name for p in (disks / cluster / node / "cache").rglob("shard-*.tar")}
            assert cached == {Path(p).name for k, p in fetched if k == key}, (key, cached)

        # The record sits in the bucket beside Tune's files, and the commands read it from there.
        def stored(key: str) -> bytes:
            return bucket_object(server, f"depth-grid/smoke/{key}")

        keys = set(bucket_keys(server, "depth-grid/smoke/"))
        assert {f"depth-grid/smoke/{k}" for k in ("experiment.json", "split.json", "leaderboard.csv",
                                                   "leaderboard.md")} <= keys, sorted(keys)
        kept = json.loads(stored("experiment.json"))
        assert kept["split"] == "split.json" and kept["storage"] == "s3://bucket/depth-grid", kept
        assert stored("leaderboard.csv").decode() == (exp / "leaderboard.csv").read_text()
        shown = subprocess.run([depth_grid, "leaderboard", "s3://bucket/depth-grid/smoke"], env=laptop,
                               capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0 and "mobilenet_unet" in shown.stdout, shown.stdout + shown.stderr
        missing = subprocess.run([depth_grid, "leaderboard", "s3://bucket/depth-grid/nothing-here"], env=laptop,
                                 capture_output=True, text=True, timeout=120)
        assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0, missing.stderr
        assert "s3://bucket/depth-grid/nothing-here: no experiment.json there" in missing.stderr
        # Other settings under the same name, on another fresh head: refused before Ray, nothing written.
        local_ray = [t for i, t in enumerate(cmd) if "--address" not in (t, cmd[i - 1])]
        other = subprocess.run([*local_ray, "--results", str(tmp_path / "results3"), "--set", "lr=0.01"],
                               env=laptop, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert other.returncode == 2 and "lr: 0.001 -> 0.01" in other.stderr, other.stdout[-2000:] + other.stderr
        assert "Traceback" not in other.stderr and not (tmp_path / "results3").exists()

        # predict from the bucket's record writes the maps the local record gives.
        maps = {}
        for name, experiment in (("bucket", "s3://bucket/depth-grid/smoke"), ("local", str(exp))):
            pred = subprocess.run([depth_grid, "predict", "--input", str(data / "rgb"), "--out", str(tmp_path / name),
                                   "--experiment", experiment, "--no-png"], env=laptop, capture_output=True,
                                  text=True, timeout=300)
            assert pred.returncode == 0, pred.stdout + pred.stderr
            maps[name] = {p.name: np.load(p) for p in sorted((tmp_path / name).glob("*.npy"))}
        assert len(maps["bucket"]) == 15 and maps["bucket"].keys() == maps["local"].keys()
        assert all(np.array_equal(maps["bucket"][k], maps["local"][k]) for k in maps["local"])
    finally:
        server.stop()
