"""The GPUs-per-trial rule (grid.gpus) on plain data, the Ray internals it reads (these tests fail
if they move), and a local run that asks for a GPU this machine lacks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grid.experiment.gpus import (
    NodeType,
    _monitor_config,
    accelerator_types,
    addable_node_types,
    choose_accelerator,
    cluster_gpus,
    decide,
    default_cpus,
    disabled_node_types,
    groups_from_autoscaling_config,
    node_types_from_autoscaling_config,
    node_types_from_groups,
)
from grid.experiment.prepare import ExperimentError

ROOT = Path(__file__).resolve().parents[1]
T4 = NodeType("gpu_t4_spot", 1.0, 4)


def test_no_gpus_and_no_autoscaler_train_on_cpu() -> None:
    plan = decide(None, [0.0], (), "no autoscaler monitor found on the head node")
    assert plan.gpus_per_trial == 0
    assert "0 GPUs now" in plan.reason and "no node type with GPUs to add" in plan.reason and "CPU" in plan.reason


def test_gpus_now_or_an_addable_gpu_type_ask_for_one() -> None:
    assert decide(None, [0.0, 2.0], ()).gpus_per_trial == 1
    plan = decide(None, [0.0], (T4,), "/home/ray/ray_bootstrap_config.yaml")
    assert plan.gpus_per_trial == 1
    assert "0 GPUs now" in plan.reason and "gpu_t4_spot" in plan.reason and "up to 4 nodes" in plan.reason


def test_explicit_request_no_node_can_hold_is_refused() -> None:
    with pytest.raises(ExperimentError, match=r"--gpus-per-trial 2: no node has or can get 2 GPUs") as e:
        decide(2.0, [0.0, 1.0], (T4,))
    assert "at most 1 on one node" in str(e.value) and "gpu_t4_spot (1 GPU per node" in str(e.value)
    with pytest.raises(ExperimentError, match="no node type with GPUs to add"):
        decide(1.0, [0.0], ())
    assert decide(1.0, [0.0], (T4,)).gpus_per_trial == 1  # the autoscaler can add it
    assert decide(0.5, [1.0], ()).gpus_per_trial == 0.5
    assert decide(0.0, [0.0], ()).gpus_per_trial == 0


def test_node_types_read_like_ray_reads_them() -> None:
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert node_types_from_autoscaling_config(cfg) == (
        NodeType("gpu_t4_spot", 1.0, 4), NodeType("gpu_p100_spot", 1.0, 2))
    cfg["max_workers"] = 3  # the global cap bounds every type
    cfg["available_node_types"]["gpu_p100_spot"]["max_workers"] = 0  # never added
    assert node_types_from_autoscaling_config(cfg) == (NodeType("gpu_t4_spot", 1.0, 3),)
    cfg["max_workers"] = 0
    assert node_types_from_autoscaling_config(cfg) == ()
    groups = [("head", {"CPU": 2}, 0), ("gpu", {"CPU": 4, "GPU": 2}, -1), ("off", {"GPU": 1}, 0)]
    assert node_types_from_groups(groups) == (NodeType("gpu", 2.0, -1),)


@pytest.mark.parametrize("config", ["cluster.yaml", "cluster-aws.yaml"])
def test_the_four_t4_type_is_off_until_raised_and_named_when_needed(config: str) -> None:
    """The configs' 4-T4 type ships at max_workers 0: never addable, so 1-GPU trials never get it
    and --gpus-per-trial 2..4 is refused, naming it; raised, it holds them."""
    cfg = yaml.safe_load((ROOT / config).read_text())
    groups = groups_from_autoscaling_config(cfg)
    assert disabled_node_types(groups) == (NodeType("gpu_4t4_spot", 4.0, 0),)
    addable = node_types_from_groups(groups)
    assert "gpu_4t4_spot" not in {t.name for t in addable} and all(t.gpus == 1 for t in addable)
    assert decide(None, [0.0], addable).gpus_per_trial == 1
    for n in (2.0, 4.0):
        with pytest.raises(ExperimentError, match=f"--gpus-per-trial {n:g}: no node has or can get") as e:
            decide(n, [0.0], addable, "bootstrap", disabled_node_types(groups))
        assert "gpu_t4_spot (1 GPU per node" in str(e.value)
        assert "Node type gpu_4t4_spot (4 GPUs per node) would hold it but has max_workers 0" in str(e.value)
    with pytest.raises(ExperimentError) as e:  # more than any type holds: no hint
        decide(8.0, [0.0], addable, "bootstrap", disabled_node_types(groups))
    assert "gpu_4t4_spot" not in str(e.value)
    cfg["available_node_types"]["gpu_4t4_spot"]["max_workers"] = 1  # docs/cluster.md, "Multi-GPU nodes"
    raised = node_types_from_autoscaling_config(cfg)
    assert NodeType("gpu_4t4_spot", 4.0, 1) in raised
    plan = decide(4.0, [0.0], raised)
    assert plan.gpus_per_trial == 4 and "node type gpu_4t4_spot has 4" in plan.reason


def test_monitor_config_is_found_by_this_clusters_gcs_address(tmp_path: Path) -> None:
    """A /proc look-alike: the monitor of another cluster is skipped, ours gives its file."""
    cfg = tmp_path / "autoscaling.yaml"
    cfg.write_text(yaml.safe_dump({"available_node_types": {"g": {"resources": {"GPU": 1}}}}))
    for pid, gcs in (("11", "10.0.0.9:6379"), ("12", "10.0.0.1:6379")):
        (tmp_path / pid).mkdir()
        argv = [sys.executable, "-u", "/x/ray/autoscaler/_private/monitor.py", "--logs-dir=/tmp/l",
                f"--gcs-address={gcs}", f"--autoscaling-config={cfg if pid == '12' else '/nope.yaml'}"]
        (tmp_path / pid / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    where, found = _monitor_config("10.0.0.1:6379", proc=tmp_path)
    assert where == str(cfg) and found["available_node_types"]["g"]["resources"]["GPU"] == 1


PRICES = {"T4": 0.14, "P100": 0.43}


def test_the_cheapest_accelerator_type_is_the_default() -> None:
    groups = groups_from_autoscaling_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    known = accelerator_types([res for _, res, _ in groups])
    assert known == {"T4", "P100"}
    chosen, why = choose_accelerator(None, known, PRICES)
    assert chosen == "T4" and "cheapest" in why and "T4 $0.14/h, P100 $0.43/h" in why
    assert choose_accelerator(None, known, {"T4": 0.5, "P100": 0.2})[0] == "P100"  # by price, not by name
    assert choose_accelerator(None, {"T4", "X9"}, PRICES)[0] == "T4"  # an unpriced type comes last
    assert choose_accelerator(None, {"X9"}, PRICES) == ("X9", "the only type the cluster has or can add (X9 unpriced)")
    assert choose_accelerator(None, set(), PRICES)[0] is None  # no node declares one: no constraint


def test_an_accelerator_type_is_asked_for_by_name_or_refused() -> None:
    assert choose_accelerator("p100", {"T4", "P100"}, PRICES) == ("P100", "--accelerator P100")
    assert choose_accelerator("any", {"T4", "P100"}, PRICES) == (None, "--accelerator any")
    with pytest.raises(ExperimentError, match=r"--accelerator A100: no node has or can add accelerator_type:A100 "
                                              r"\(its nodes and node types offer P100, T4\)"):
        choose_accelerator("A100", {"T4", "P100"}, PRICES)


def test_cpus_per_trial_default_to_the_gpu_nodes_cpus_per_gpu() -> None:
    groups = groups_from_autoscaling_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    assert default_cpus(1.0, [res for _, res, _ in groups]) == (4.0, "4: the GPU nodes' 4 CPUs per GPU")
    four_t4 = {"CPU": 48, "GPU": 4, "accelerator_type:T4": 1}  # g4dn.12xlarge
    assert default_cpus(1.0, [four_t4])[0] == 12 and default_cpus(2.0, [four_t4])[0] == 24
    assert default_cpus(1.0, [four_t4, {"CPU": 4, "GPU": 1}])[0] == 4  # the tightest node type
    assert default_cpus(0.5, [{"CPU": 1, "GPU": 1}])[0] == 1  # whole, at least 1
    assert default_cpus(1.0, [{"GPU": 1}]) == (1.0, "1: no GPU node declares its CPUs")
    assert default_cpus(0.0, [four_t4]) == (1.0, "1 on CPU")


def test_a_local_ray_without_accelerator_types(ray_session) -> None:
    """The test session's logical GPU declares no type: trials ask for none, and a type asked for
    is refused naming it."""
    plan = cluster_gpus(1.0, None, PRICES)
    assert plan.gpus_per_trial == 1 and plan.accelerator is None
    assert plan.cpus_per_trial == 2 and plan.cpus_reason == "2: the GPU nodes' 2 CPUs per GPU"  # 2 CPUs, 1 GPU
    assert cluster_gpus(1.0, None, PRICES, cpus=1.0).cpus_per_trial == 1
    with pytest.raises(ExperimentError, match="--accelerator T4: no node has or can add accelerator_type:T4 "
                                              r"\(no node or node type declares"):
        cluster_gpus(1.0, "T4", PRICES)
    assert cluster_gpus(0.0, "T4", PRICES).accelerator is None  # no GPU, no GPU type


def test_ray_internals_this_rule_reads(ray_session) -> None:
    """A local Ray: no v2 cluster config in the GCS, and its monitor (found on the head node by
    its command line) runs without an autoscaling config. Fails if Ray moves either."""
    import ray._private.state

    assert ray._private.state.state.get_cluster_config() is None
    types, where = addable_node_types()
    assert types == () and "without --autoscaling-config" in where, where


def test_local_run_asking_for_a_missing_gpu_fails_at_once(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    results = tmp_path / "results"
    start = time.time()
    run = subprocess.run([sys.executable, "-m", "grid.run", "--space", "smoke", "--gpus-per-trial", "1",
                          "--results", str(results)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=180)
    took = time.time() - start
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    assert "error: --gpus-per-trial 1: no node has or can get 1 GPU," in run.stderr
    assert "wait forever" in run.stderr and "Traceback" not in run.stderr
    assert not results.exists() and list(tmp_path.iterdir()) == []  # wrote nothing
    assert took < 120, f"took {took:.0f} s"  # Ray start-up on a busy machine, not a hang


def test_bootstrap_config_is_the_fallback_when_no_monitor_is_visible(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "proc").mkdir()
    assert _monitor_config("10.0.0.1:6379", proc=tmp_path / "proc") == (
        "no autoscaler monitor found on the head node", None)
    (tmp_path / "ray_bootstrap_config.yaml").write_text((ROOT / "cluster.yaml").read_text())
    where, cfg = _monitor_config("10.0.0.1:6379", proc=tmp_path / "proc")
    assert where == str(tmp_path / "ray_bootstrap_config.yaml") and "gpu_t4_spot" in cfg["available_node_types"]
