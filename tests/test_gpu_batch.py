"""The per-step batch on a GPU (``TrialConfig.on_device``) from the largest batch bench_gpu fitted
(``search_spaces.profiles.T4_MAX_BATCH``): the effective batch stays, the CPU path never moves."""

from __future__ import annotations

import pytest

from search_spaces.profiles import PAPER, T4_MAX_BATCH
from trainables.config import ConfigError, TrialConfig

PROBED = {"unet": 8, "segformer_b5": 3, "mobilenet_unet": 64, "mask2former_swin": 1}


@pytest.mark.parametrize(("arch", "world", "expected"), [
    ("unet", 1, (8, 2)),  # 8 fit: 8 x 2
    ("segformer_b5", 1, (2, 8)),  # 3 fit: the largest divisor of 16 below is 2
    ("mobilenet_unet", 1, (16, 1)),  # more than 16 fit: one step of 16
    ("mask2former_swin", 1, (1, 16)),
    ("resnet_unet", 1, (2, 8)),  # not probed: as set
    ("unet", 2, (8, 2)),  # 2 steps, one per GPU
    ("unet", 4, (4, 4)),  # 8 would leave 2 steps for 4 GPUs: 4 x 4, one step each
    ("mobilenet_unet", 4, (4, 4)),
])
def test_on_a_gpu_the_probed_batch_keeps_the_effective_batch(arch: str, world: int, expected) -> None:
    cfg = TrialConfig.from_dict({**PAPER, "arch": arch, "gpu_max_batch": PROBED, "world_size": world})
    gpu = cfg.on_device("cuda")
    assert (gpu.batch_size, gpu.accum_steps) == expected
    assert gpu.effective_batch == cfg.effective_batch == 16 and gpu.accum_steps % world == 0
    assert cfg.on_device("cpu") is cfg  # the CPU path and the exact-resume runs keep their settings


def test_the_table_is_checked_and_the_profile_carries_it_only_when_filled() -> None:
    with pytest.raises(ConfigError, match="gpu_max_batch"):
        TrialConfig.from_dict({"arch": "unet", "gpu_max_batch": {"unet": 0}})
    with pytest.raises(ConfigError, match="gpu_max_batch"):
        TrialConfig.from_dict({"arch": "unet", "gpu_max_batch": [8]})
    assert ("gpu_max_batch" in PAPER) == bool(T4_MAX_BATCH)
    paper = TrialConfig.from_dict({**PAPER, "arch": "unet"})
    assert paper.on_device("cuda").effective_batch == 16
    if not T4_MAX_BATCH:  # pending a GPU run of bench_gpu: 2 x 8, as the paper trained
        assert paper.on_device("cuda") == paper
