"""The trainable's door: Tune config dicts become a frozen, typed TrialConfig or a clear error."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from trainables.config import ConfigError, TrialConfig
from trainables.loop import InjectedFault, check_fault


def test_from_dict_coerces_what_tune_and_json_produce() -> None:
    cfg = TrialConfig.from_dict({"arch": "unet", "lam": np.float64(0.85), "epochs": np.int64(3),
                                 "image_size": [64, 80], "lr": 3, "amp": np.bool_(False)})
    assert cfg.lam == 0.85 and isinstance(cfg.lam, float)
    assert cfg.epochs == 3 and type(cfg.epochs) is int
    assert cfg.image_size == (64, 80)
    assert cfg.lr == 3.0 and cfg.amp is False
    assert cfg.effective_batch == 2 * 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lam = 0.1  # type: ignore[misc]


def test_unknown_keys_are_rejected_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown trial config key\(s\) \['lamda'\].*valid keys"):
        TrialConfig.from_dict({"arch": "unet", "lamda": 0.5})


@pytest.mark.parametrize("key,value", [
    ("epochs", 1.5), ("epochs", "4"), ("lr", "1e-4"), ("amp", 1), ("image_size", [64]),
    ("image_size", "64x80"), ("arch", 3), ("model_kwargs", "tiny"), ("lam", float("nan")),
])
def test_wrong_types_are_rejected(key: str, value) -> None:
    with pytest.raises(ConfigError, match=key if key != "image_size" or value != [64] else "image_size"):
        TrialConfig.from_dict({"arch": "unet", key: value})


@pytest.mark.parametrize("key,value,message", [
    ("lam", 1.5, "lam=1.5 must be in [0, 1]"), ("lr", 0.0, "lr=0.0 must be a positive number"),
    ("epochs", 0, "epochs=0 must be >= 1"), ("pretrained", "maybe", "pretrained='maybe' must be one of"),
    ("schedule", "step", "schedule='step' must be one of"), ("loss", "l1", "loss='l1' must be one of"),
    ("batch_size", 0, "batch_size=0 must be >= 1"), ("accum_steps", 0, "accum_steps=0 must be >= 1"),
])
def test_out_of_range_values_are_rejected(key: str, value, message: str) -> None:
    # Anchored: the message names the key, the value and the rule, first.
    with pytest.raises(ConfigError, match="^trial setting " + re.escape(message)):
        TrialConfig.from_dict({"arch": "unet", key: value})


def test_missing_arch() -> None:
    with pytest.raises(ConfigError, match="arch"):
        TrialConfig.from_dict({"lam": 0.5})


def test_round_trip_through_dict() -> None:
    cfg = TrialConfig(arch="unet", image_size=(32, 48), model_kwargs={"size": "tiny"})
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_fault_targets_one_architecture_and_one_step() -> None:
    cfg = TrialConfig(arch="unet", fault="unet:raise@1.2")
    check_fault(cfg, 0, 2)
    check_fault(cfg, 1, 1)
    with pytest.raises(InjectedFault, match="epoch 1 step 2"):
        check_fault(cfg, 1, 2)
    other = TrialConfig(arch="mobilenet_unet", fault="unet:raise@1.2")
    check_fault(other, 1, 2)  # another architecture is not touched


def test_architectures_without_released_weights_train_from_scratch_at_the_paper_settings() -> None:
    """``pretrained="yes"`` (the paper's) on unet means "from scratch, by design", not an error;
    on an architecture whose released weights cannot be had it still fails loudly."""
    from search_spaces.profiles import PAPER
    from trainables.models import MODELS, PretrainedWeightsError
    from trainables.trainable import FROM_SCRATCH, build_trial_model

    assert not MODELS["unet"].has_released_weights
    _, label = build_trial_model(TrialConfig(arch="unet", **{**PAPER, "model_kwargs": {"size": "tiny"}}))
    assert label == FROM_SCRATCH == "none (from scratch)"
    assert MODELS["segformer_b4"].has_released_weights
    with pytest.raises(PretrainedWeightsError):  # tiny has no released weights: yes must fail
        build_trial_model(TrialConfig(arch="segformer_b4", **{**PAPER, "model_kwargs": {"size": "tiny"}}))
