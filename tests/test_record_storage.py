"""The experiment's record lives in the bucket (issue 21 item 5): a run with ``--storage s3://...``
keeps ``experiment.json``, ``split.json`` and the leaderboard under ``<storage>/<name>/``; the
commands read an experiment from there; the same command on a fresh head (an empty ``results/``)
with other settings is refused. That the same command resumes from the bucket without computing
the split again, and that predict reads the bucket's record, are checked on a fresh cluster by
``tests/test_cluster_autoscaling.py``.

The bucket is a real S3-protocol server on loopback (moto's server mode, ``tests/s3_server.py``);
every command runs as a user types it, in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from s3_server import S3Server, s3_server_fixture  # noqa: F401  (the fixture)

from grid.synth import generate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _cli(*argv, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grid.cli", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def world(s3_server: S3Server, tmp_path_factory):
    root = tmp_path_factory.mktemp("bucket-record")
    data = generate(root / "data", scenes=6, views=4, size=(48, 64), seed=3)
    storage = s3_server.bucket("runs") + "/ray"
    env = {**os.environ, **s3_server.env(), "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "DEPTH_GRID_CACHE_DIR": str(root / "node-cache"),
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="rs", dir="/tmp")}
    command = ["run", "--space", "smoke", "--data", data, "--storage", storage, "--gpus-per-trial", "0"]
    first = _cli(*command, "--results", root / "head1", cwd=root, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return root, data, storage, env, command, first


def test_the_record_is_kept_in_the_bucket(world, s3_server: S3Server) -> None:
    root, _, storage, env, _, first = world
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket="runs", Prefix="ray/smoke/")["Contents"]}
    assert {"ray/smoke/experiment.json", "ray/smoke/split.json", "ray/smoke/leaderboard.csv",
            "ray/smoke/leaderboard.md"} <= keys, sorted(keys)
    stored = json.loads(s3_server.client().get_object(Bucket="runs", Key="ray/smoke/experiment.json")["Body"].read())
    assert stored["split"] == "split.json" and stored["storage"] == storage
    local = (root / "head1" / "smoke" / "leaderboard.csv").read_text()
    assert s3_server.client().get_object(Bucket="runs", Key="ray/smoke/leaderboard.csv")["Body"].read().decode() == local

    shown = _cli("leaderboard", f"{storage}/smoke", cwd=root, env=env)  # the URI as the argument
    assert shown.returncode == 0, shown.stderr
    assert "unet" in shown.stdout and "mobilenet_unet" in shown.stdout


def test_a_fresh_head_with_other_settings_is_refused_before_ray(world) -> None:
    root, _, _, env, command, _ = world
    refused = _cli(*command, "--results", root / "head3", "--set", "lr=0.01", cwd=root, env=env)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "lr: 0.001 -> 0.01" in refused.stderr and "Traceback" not in refused.stderr
    assert not (root / "head3").exists()


def test_an_experiment_uri_with_no_record_is_one_line(world) -> None:
    root, _, storage, env, _, _ = world
    missing = _cli("leaderboard", f"{storage}/nothing-here", cwd=root, env=env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and f"{storage}/nothing-here: no experiment.json there" in missing.stderr
