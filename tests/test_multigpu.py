"""Multi-GPU trials: ``--gpus-per-trial 2`` trains one trial on two data-parallel processes (gloo
on the CPU here). Two ranks see the same global batches as one process: the same loss curve up
to float summation order, and a checkpoint that resumes exactly."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from grid.experiment.prepare import prepare_bundle
from grid.synth import generate
from trainables.config import ConfigError, TrialConfig
from trainables.data import DatasetSpec
from trainables.distributed import data_parallel
from trainables.follower import train_epochs, trial_state
from trainables.loop import make_loaders
from trainables.sampler import EpochSampler
from trainables.state import MID_EPOCH_KEY, RANK_RNG_KEY
from trainables.vml import resolve_vml

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]
# The 2-rank run's epoch losses against the 1-process run's, relative, and its weights, absolute.
# With one micro-batch per rank per optimiser step both are bit-identical (a + b either way);
# with two per rank, as here, the gradient sums are (a + c) + (b + d), not ((a + b) + c) + d.
# Measured here: epoch losses equal, weights 1.2e-7 apart after 2 epochs; another seed: losses
# 3e-8 apart. Another order (seed) moves the losses by 1e-2.
LOSS_RTOL = 1e-6
WEIGHT_ATOL = 1e-6


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=4, views=3, size=(32, 40), seed=2)


@pytest.fixture(scope="module")
def bundle(scenes: Path, tmp_path_factory):
    return prepare_bundle(DatasetSpec(root=scenes), tmp_path_factory.mktemp("results"))[0]


# The trial of the Ray run below: the smoke space's unet with SETTINGS. Effective batch 4 = 1 x 4:
# one process accumulates 4 micro-batches per optimiser step, two ranks 2 each; 9 steps an
# epoch, so the last group has one step and rank 1 sits the last round out.
SETTINGS = {"epochs": 2, "batch_size": 1, "accum_steps": 4, "max_steps_per_epoch": 0, "image_size": [24, 32],
            "augment": "standard", "checkpoint_steps": 2}
SMOKE = {"arch": "unet", "model_kwargs": {"size": "tiny"}, "lam": 0.5, "lr": 1e-3, "max_val_images": 4, "log_images": 1,
         "num_workers": 0, "pretrained": "no", "seed": 0}


def _cfg(**changes) -> TrialConfig:
    return TrialConfig.from_dict({**SMOKE, **SETTINGS, **changes})


class SaveAt:
    """Rank 0's checkpointer: asks for a checkpoint after step ``done`` of ``epoch`` and keeps
    the state it saves (through torch.save, as a trial does)."""

    def __init__(self, epoch: int, done: int) -> None:
        self.at, self.state, self.saved, self.saved_at = (epoch, done), None, None, None

    def due(self, done: int, n_steps: int) -> bool:
        return (self.state.epoch, done) == self.at

    def save(self) -> None:
        record = {"trial_config": {}, "image_size": [], "metrics": {"mid_epoch": True}, "weights": "random",
                  "provenance": {}}
        buffer = io.BytesIO()
        torch.save(self.state.state_dict(record), buffer)
        self.saved, self.saved_at = buffer.getvalue(), (self.state.epoch, self.state.progress.step)


def _train(cfg: TrialConfig, bundle, saved: dict | None = None, checkpointer: SaveAt | None = None):
    """A trial's epochs on ``cfg.world_size`` ranks, this process rank 0 (``train_depth``'s setup,
    without Tune): its losses and its rank 0 state."""
    resolve_vml()  # as every trial does (its followers too)
    torch.manual_seed(cfg.seed)
    payload = {"entry": "trainables.follower:follow", "config": cfg.to_dict(), "data": bundle, "plugins": []}
    with data_parallel(cfg.world_size, CPU, payload) as ranks:
        loader, _ = make_loaders(cfg, bundle, ranks)
        state, _ = trial_state(cfg, loader, CPU, saved, ranks)
        if checkpointer is not None:
            checkpointer.state = state
        return train_epochs(state, loader, cfg, CPU, ranks, checkpointer), state


def _params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.fixture(scope="module")
def one_rank(bundle):
    return _train(_cfg(), bundle)


@pytest.fixture(scope="module")
def two_ranks(bundle):
    """Two ranks, rank 0 asked for a checkpoint after step 2 of epoch 1: mid-group (step 2 of a
    4-step group), so it is written at the group's end, step 4."""
    saver = SaveAt(epoch=1, done=2)
    losses, state = _train(_cfg(world_size=2), bundle, checkpointer=saver)
    return losses, state, saver


def test_two_ranks_train_on_the_global_batch_of_one(bundle, one_rank, two_ranks) -> None:
    """The same samples in each optimiser step: the same loss curve and weights, up to the order
    of the gradients' float sums."""
    (one_losses, one), (two_losses, two, _) = one_rank, two_ranks
    assert len(two_losses) == 2 and two_losses[0] != two_losses[1]
    assert two_losses == pytest.approx(one_losses, rel=LOSS_RTOL, abs=0)
    for p, q in zip(one.model.parameters(), two.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=WEIGHT_ATOL)
    other_order = _train(_cfg(seed=1), bundle)[0]  # another seed: the same images in another order
    assert other_order != pytest.approx(one_losses, rel=1e3 * LOSS_RTOL, abs=0)  # the tolerance can tell


def test_a_two_rank_checkpoint_resumes_exactly(bundle, two_ranks) -> None:
    """The checkpoint holds the other rank's random state, no gradients; two new ranks resumed
    from it end bit-identical to the unbroken two."""
    losses, unbroken, saver = two_ranks
    assert saver.saved_at == (1, 4)
    saved = torch.load(io.BytesIO(saver.saved), weights_only=True)
    assert saved[MID_EPOCH_KEY]["step"] == 4 and saved[MID_EPOCH_KEY]["grads"] == []
    assert len(saved[RANK_RNG_KEY]) == 1
    resumed_losses, resumed = _train(_cfg(world_size=2), bundle, saved)
    assert resumed_losses == losses[1:]
    assert _params_equal(unbroken.model, resumed.model)
    assert repr(unbroken.optimizer.state_dict()) == repr(resumed.optimizer.state_dict())


def test_a_follower_that_raises_fails_the_trial_at_once(bundle) -> None:
    """Rank 1 raises at its step 3 (the fault fires on the rank training that step): rank 0's next
    collective breaks, and the trial's error names the rank instead of hanging."""
    with pytest.raises(RuntimeError, match=r"data-parallel trial: rank 1 exited with code 1") as e:
        _train(_cfg(world_size=2, fault="raise@0.3"), bundle)
    assert "did not all start" not in str(e.value.__cause__)  # it had joined and trained


def test_each_rank_reads_its_share_of_the_same_order() -> None:
    whole = list(EpochSampler(11, seed=1))
    shares = [list(EpochSampler(11, seed=1).shard(2, rank, 2)) for rank in (0, 1)]
    assert sorted(shares[0] + shares[1]) == sorted(whole)
    assert shares[0][:2] == whole[:2] and shares[1][:2] == whole[2:4] and shares[0][2:4] == whole[4:6]


def test_accum_steps_must_divide_among_the_ranks() -> None:
    from ray import tune

    from grid.experiment.plan import ExperimentError
    from grid.experiment.tuner import check_world_size

    with pytest.raises(ConfigError, match="accum_steps=4 must be a multiple of world_size=3"):
        _cfg(world_size=3)
    check_world_size([("x", {"accum_steps": tune.grid_search([4, 8])})], 4)
    with pytest.raises(ExperimentError, match=r"--gpus-per-trial 4: accum_steps=6 \(experiment x\) is not a multiple"):
        check_world_size([("x", {"accum_steps": tune.grid_search([4, 6])})], 4)
    with pytest.raises(ExperimentError, match="--gpus-per-trial 2 and --set world_size=4 disagree"):
        check_world_size([("x", {"accum_steps": 4, "world_size": 4})], 2)


# ---- through Ray: --gpus-per-trial 2 on two logical GPUs, SIGKILLed mid-epoch ----------------------

RUN = """
import sys, tempfile
import ray
ray.init(address="local", num_cpus=2, num_gpus=2, object_store_memory=int(2e8), include_dashboard=False,
         _temp_dir=tempfile.mkdtemp(prefix="rt", dir="/tmp"), log_to_driver=False, configure_logging=False)
from grid.cli.run import parse_args
from grid.experiment.run import run
run(parse_args(sys.argv[1:]))
"""


def test_gpus_per_trial_2_trains_two_ranks_and_resumes_a_kill_exactly(scenes: Path, bundle, two_ranks,
                                                                       tmp_path: Path) -> None:
    """Ray gives the trial 2 (logical) GPUs; it trains on 2 gloo ranks, is SIGKILLed at step 4 of
    epoch 1 (its followers die with it), resumes there and ends bit-identical to an unbroken
    2-rank run; its row shows 2 GPUs, world size 2, one preemption and the cost of 2 GPUs."""
    results = tmp_path / "results"
    sets = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={json.dumps(v, separators=(',', ':'))}")]
    cmd = [sys.executable, "-c", RUN, "--space", "smoke", "--arch", "unet", "--data", str(scenes), "--results",
           str(results), "--name", "ddp", "--gpus-per-trial", "2", "--cpus-per-trial", "1", "--verbose", "0",
           "--max-failures", "0", *sets, "--set", "fault=unet:kill@1.4"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (row,) = pd.read_csv(results / "ddp" / "leaderboard.csv").to_dict("records")
    assert row["status"] == "finished" and (row["gpus_per_trial"], row["world_size"]) == (2, 2)
    assert "| world_size | gpu_hours |" in (results / "ddp" / "leaderboard.md").read_text()
    assert (row["preemptions"], row["failures"]) == (1, 0)
    (trial_dir,) = [p.parent for p in (results / "ray" / "ddp").glob("*/params.json")]
    reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert sum(r.get("time_this_iter_s", 0) for r in reports) * 2 / 3600 == pytest.approx(row["gpu_hours"], abs=2e-6)
    # Checkpoints due after steps 2, 4, 6, 8 are written at the groups' ends, 4 and 8; killed at
    # step 4 of epoch 1, the retry (another process) goes on from its checkpoint there.
    mid = [(r["pid"] == reports[0]["pid"], r["epoch_in_progress"], r["epoch_step"]) for r in reports if r.get("mid_epoch")]
    assert mid == [(True, 0, 4), (True, 0, 8), (True, 1, 4), (False, 1, 8)]

    # The same trial, unbroken, on two ranks in this process (two_ranks: its checkpointer only
    # saves), on the same data (the run's split):
    split = json.loads((results / "ddp" / "split.json").read_text())
    assert split["train"] == [it.name for it in bundle.train]
    final = torch.load(max(p for p in trial_dir.glob("checkpoint_*") if (p / "metrics.json").is_file())
                       / "checkpoint.pt", weights_only=True)
    assert TrialConfig.from_dict({**final["trial_config"], "fault": ""}) == _cfg(world_size=2)
    losses, unbroken, _ = two_ranks
    assert [r["train_loss"] for r in reports if "epoch" in r][-2:] == losses
    for name, tensor in unbroken.model.state_dict().items():  # BatchNorm's statistics: rank 0's in both
        assert torch.equal(tensor, final["model"][name]), name
