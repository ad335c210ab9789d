"""Exact resume: a trial SIGKILLed after its first checkpoint and retried by Tune ends with the
same weights, optimiser state and metrics as the same trial run straight through."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from grid.run import parse_args, run
from grid.synth import generate
from search_spaces.profiles import PAPER
from trainables.config import TrialConfig
from trainables.models import PretrainedWeightsError, build_model
from trainables.trainable import build_trial_model, trial_model

SETTINGS = ["--arch", "mobilenet_unet", "--set", "epochs=2", "--set", "max_steps_per_epoch=3",
            "--gpus-per-trial", "0", "--verbose", "0", "--max-failures", "2"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=3)


def _final(results: Path, name: str) -> tuple[dict, list[dict], Path]:
    exp = results / name
    board = pd.read_csv(exp / "leaderboard.csv")
    assert list(board.status) == ["finished"], board[["status", "error"]]
    (trial_dir,) = [p.parent for p in (results / "ray" / name).glob("*/params.json")]
    last = max(trial_dir.glob("checkpoint_*"), key=lambda p: p.name)
    state = torch.load(last / "checkpoint.pt", map_location="cpu", weights_only=True)
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    return state, rows, trial_dir


def test_a_killed_and_resumed_trial_ends_as_if_never_stopped(ray_session, scenes: Path, tmp_path: Path):
    results = tmp_path / "results"
    common = ["--space", "smoke", "--data", str(scenes), "--results", str(results), *SETTINGS]
    run(parse_args([*common, "--name", "straight"]))
    # kill@1.0: the trial process SIGKILLs itself at epoch 1 step 0, after the epoch-1 checkpoint.
    run(parse_args([*common, "--name", "killed", "--set", "fault=mobilenet_unet:kill@1.0"]))
    straight, straight_rows, _ = _final(results, "straight")
    killed, killed_rows, killed_dir = _final(results, "killed")
    assert "Failure # 1" in (killed_dir / "error.txt").read_text()  # it really died and resumed

    assert straight["epoch"] == killed["epoch"] == 2
    for key, tensor in straight["model"].items():
        assert torch.equal(tensor, killed["model"][key]), f"weight {key} differs after the resume"
    for key in ("state", "param_groups"):  # Adam's moments and step counts
        assert repr(straight["optimizer"][key]) == repr(killed["optimizer"][key])
    metrics = ("train_loss", "si_rmse", "abs_rel", "rmse", "delta1")
    assert [[r[m] for m in metrics] for r in straight_rows] == [[r[m] for m in metrics] for r in killed_rows]
    assert torch.equal(straight["rng"]["loader"], killed["rng"]["loader"])


def test_a_resumed_model_takes_every_weight_and_its_label_from_the_checkpoint() -> None:
    """The retried trial may run on a node without the hub cache: ``trial_model`` must not ask
    for the released weights again, and keeps the label the trial started with."""
    cfg = TrialConfig(arch="segformer_b4", **{**PAPER, "model_kwargs": {"size": "tiny"}})
    with pytest.raises(PretrainedWeightsError):  # no weights can be had for it here
        build_trial_model(cfg)
    trained = build_model("segformer_b4", size="tiny")
    state = {"model": trained.state_dict(), "weights": "pretrained"}
    model, label = trial_model(cfg, state)
    assert label == "pretrained"
    for key, tensor in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor)
