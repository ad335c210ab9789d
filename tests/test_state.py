"""``TrialState``: the checkpoint's keys are the documented ones, and a state saved after one
epoch and loaded into a fresh trial continues exactly as the trial that never stopped."""

from __future__ import annotations

import io

import pytest
import torch

from grid.experiment.prepare import prepare_bundle
from grid.synth import generate
from trainables.config import TrialConfig
from trainables.data import DatasetSpec
from trainables.loop import make_loaders, train_one_epoch
from trainables.models import build_model
from trainables.state import CHECKPOINT_KEYS, RAW_MODEL_KEY, RECORD_KEYS, TrialState

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    data = generate(root / "scenes", scenes=4, views=3, size=(40, 56), seed=6)
    return prepare_bundle(DatasetSpec(root=data), root / "results")[0]


def _state(cfg: TrialConfig, bundle) -> TrialState:
    torch.manual_seed(cfg.seed)  # the same initial weights in every state built here
    train_loader, _ = make_loaders(cfg, bundle)
    return TrialState.create(cfg, build_model(cfg.arch, size="tiny"), train_loader, CPU)


def _record(cfg: TrialConfig) -> dict:
    return {"trial_config": cfg.to_dict(), "image_size": list(cfg.image_size), "metrics": {"si_rmse": 0.5},
            "weights": "random", "provenance": {}}


def _train_epoch(state: TrialState, cfg: TrialConfig) -> None:
    train_one_epoch(state, state.train_loader, cfg, CPU)
    state.epoch += 1


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["plain", "ema"])
def test_a_saved_state_resumes_bit_identical(bundle, ema: float) -> None:
    cfg = TrialConfig(arch="unet", epochs=2, batch_size=2, accum_steps=2, image_size=(24, 32), num_workers=0,
                      max_steps_per_epoch=3, augment="standard", schedule="cosine", ema=ema, seed=3,
                      pretrained="no")
    straight = _state(cfg, bundle)
    _train_epoch(straight, cfg)
    saved = straight.state_dict(_record(cfg))
    expected_keys = list(CHECKPOINT_KEYS) + ([RAW_MODEL_KEY] if ema else [])
    assert list(saved) == expected_keys and set(RECORD_KEYS) <= set(CHECKPOINT_KEYS)
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # what a resumed trial reads

    _train_epoch(straight, cfg)  # the unbroken trial's second epoch

    # A fresh trial with other weights, another random state and another history: loading
    # the checkpoint (which also restores the process's global random state) must overwrite it all.
    resumed = _state(TrialConfig.from_dict({**cfg.to_dict(), "seed": 99}), bundle)
    _train_epoch(resumed, cfg)
    resumed.epoch = 0
    resumed.load_state_dict(loaded)
    assert resumed.epoch == resumed.resumed_epoch == 1
    _train_epoch(resumed, cfg)
    for a, b in ((straight.model, resumed.model), (straight.eval_model, resumed.eval_model)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
    assert straight.optimizer.state_dict()["state"].keys() == resumed.optimizer.state_dict()["state"].keys()
    assert straight.scheduler.state_dict() == resumed.scheduler.state_dict()


def test_a_record_with_other_keys_is_refused(bundle) -> None:
    cfg = TrialConfig(arch="unet", image_size=(24, 32), num_workers=0, pretrained="no")
    state = _state(cfg, bundle)
    with pytest.raises(ValueError, match="record has the keys"):
        state.state_dict({**_record(cfg), "extra": 1})
