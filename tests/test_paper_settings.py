"""The paper's settings on real-size data, offline, through the real loading path (issue 12).

A temporary ``HF_HOME`` holds every Hugging Face repo the zoo loads (the released configs, random
weights: ``hf_snapshots.write_released_hub``) and ``python -m grid.run --space all_models``
trains every architecture at the space's own settings (lambda 0.5, AdamW lr 1e-4, batch 2 x
accumulation 8, ``pretrained="yes"``; no CPU profile) on 426x560 synthetic scenes, with
``HF_HUB_OFFLINE=1``: the weights can come from nowhere but that cache, through
``from_pretrained`` / ``hf_hub_download``. mobilenet_unet reads torchvision's file from the torch
hub cache, which ``python -m grid.weights fetch`` fills (CI runs it first).

To fit CI on two cores it runs ``--epochs 1`` (the paper: 4) with one step per epoch and two
validation images; the settings that decide what is loaded and trained are the paper's. Memory
decides the rest. A trial of the big models at 426x560 peaks at about 6 GB on the CPU, so one runs
at a time, on every CPU (``--cpus-per-trial``; ``--max-concurrent`` alone does not limit a grid
search). Tune reuses the trial process, and glibc kept in its heap what earlier trials had freed:
it grew to 16 GB by segformer_b5 and tripped Ray's memory monitor on a shared 24 GB machine.
``MALLOC_MMAP_THRESHOLD_`` makes large freed blocks go back to the system (peak: 6 GB).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from hf_snapshots import released_weights, write_released_hub

from grid.synth import generate
from search_spaces.all_models import ARCHS
from trainables.config import TrialConfig
from trainables.trainable import CHECKPOINT_FILE, FROM_SCRATCH

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1800
# One stem weight per pretrained architecture: (its name in the trial checkpoint, the repo, its
# name in that repo's file). The file has the released checkpoints' names, which transformers 5
# writes and renames on loading (``encoder.patch_embeddings.0`` -> ``stages.0.patch_embeddings``).
# After one AdamW step at lr 1e-4 the weight is within 1e-4 of the snapshot's.
STEMS = {
    "segformer_b4": ("net.segformer.stages.0.patch_embeddings.proj.weight",
                     "nvidia/segformer-b4-finetuned-ade-512-512", "segformer.encoder.patch_embeddings.0.proj.weight"),
    "segformer_b5": ("net.segformer.stages.0.patch_embeddings.proj.weight",
                     "nvidia/segformer-b5-finetuned-ade-640-640", "segformer.encoder.patch_embeddings.0.proj.weight"),
    "segformer_unet": ("encoder.stages.0.patch_embeddings.proj.weight",
                       "nvidia/segformer-b4-finetuned-ade-512-512", "segformer.encoder.patch_embeddings.0.proj.weight"),
    "mask2former_swin": ("net.pixel_level_module.encoder.swin.embeddings.patch_embeddings.projection.weight",
                         "facebook/mask2former-swin-small-coco-instance",
                         "model.pixel_level_module.encoder.embeddings.patch_embeddings.projection.weight"),
    "unetpp": ("net.encoder.conv1.weight", "smp-hub/resnet34.imagenet", "conv1.weight"),
    "resnet_unet": ("net.encoder.conv1.weight", "smp-hub/resnet50.imagenet", "conv1.weight"),
    "resnet_transformer": ("net.encoder.conv1.weight", "smp-hub/resnet50.imagenet", "conv1.weight"),
}


@pytest.fixture(scope="session")
def released_hf_home() -> Iterator[Path]:
    """An ``HF_HOME`` with the released repos (about 1 GB, written in ~10 s), once a session."""
    root = Path(tempfile.mkdtemp(prefix="hfh", dir="/tmp"))
    write_released_hub(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_all_models_at_paper_settings_load_released_snapshots_offline(released_hf_home, tmp_path):
    returncode, log_path, results = run_space_offline("all_models", released_hf_home, tmp_path)
    try:  # the trials' checkpoints (model and AdamW state) take about 5 GB: never kept
        _check_run(returncode, log_path, results, released_hf_home)
    finally:
        shutil.rmtree(results / "ray", ignore_errors=True)


def _check_run(returncode: int, log_path: Path, results: Path, hf_home: Path) -> None:
    """9 finished trials at the paper's settings, each started from its released snapshot."""
    assert returncode == 0, log_path.read_text()[-6000:]
    experiment = results / "all_models"
    assert json.loads((experiment / "experiment.json").read_text())["synthetic"] is False

    board = pd.read_csv(experiment / "leaderboard.csv")
    assert sorted(board.arch) == sorted(ARCHS) and len(board) == 9
    assert (board.status == "finished").all(), board[["arch", "status", "error"]].to_string()
    weights = dict(zip(board.arch, board.weights, strict=True))
    assert weights == {a: FROM_SCRATCH if a == "unet" else "pretrained" for a in ARCHS}

    assert TrialConfig(arch="unet").image_size == (426, 560)
    for trial in sorted((results / "ray" / "all_models").glob("train_depth_*")):
        params = json.loads((trial / "params.json").read_text())
        assert {k: params[k] for k in ("lam", "lr", "batch_size", "accum_steps", "pretrained")} == \
            {"lam": 0.5, "lr": 1e-4, "batch_size": 2, "accum_steps": 8, "pretrained": "yes"}
        assert "image_size" not in params  # no CPU profile: the trial default, 426x560
        if params["arch"] not in STEMS:
            continue
        key, repo_id, snap_key = STEMS[params["arch"]]
        (ckpt,) = trial.glob(f"checkpoint_*/{CHECKPOINT_FILE}")
        trained = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["model"][key]
        released = released_weights(hf_home, repo_id)[snap_key]
        # Adam's first step moves each weight by at most lr (1e-4); a random init is ~1e-2 away.
        assert (trained - released).abs().max() < 2e-4, params["arch"]


def run_space_offline(space: str, hf_home: Path, tmp_path: Path, extra: tuple[str, ...] = (),
                      timeout_s: int = TIMEOUT_S) -> tuple[int, Path, Path]:
    """``python -m grid.run --space SPACE`` at the space's own settings on 426x560 synthetic scenes
    (8 train / 2 val), one step per epoch, two validation images, ``--epochs 1``, offline with
    ``hf_home`` as the only source of weights; one trial at a time on every CPU (its checkpoint's
    model and AdamW state stay in memory once). A timeout kills ``grid.run`` and its Ray: its own
    session. Returns (exit code, the run's log, the results folder). Also used by test_depth_models.py.
    """
    data = generate(tmp_path / "data", scenes=5, views=2, size=(426, 560), seed=0)  # 8 train / 2 val
    results = tmp_path / "results"
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = {k: v for k, v in os.environ.items()  # Ray workers inherit the environment of the local Ray
           if not k.startswith(("HF_", "HUGGINGFACE_")) and k != "OMP_NUM_THREADS"}  # Ray sets it
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1", MALLOC_MMAP_THRESHOLD_="1048576")
    cmd = [sys.executable, "-m", "grid.run", "--space", space, "--data", str(data), "--results", str(results),
           "--epochs", "1", "--set", "max_steps_per_epoch=1", "--set", "max_val_images=2", "--max-concurrent", "1",
           "--cpus-per-trial", str(len(os.sched_getaffinity(0))), "--max-failures", "0", "--verbose", "1", *extra]
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)
    return returncode, log_path, results
