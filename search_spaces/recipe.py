"""The recipe ablation: the paper's recipe, each option of the training recipe added alone,
then all of them together, on one architecture (``--arch``, default ``mobilenet_unet``).

Each trial's ``tag`` names its variant (the leaderboard shows it). At the paper's settings
(426x560, 4 epochs, effective batch 16) on a GPU cluster; with no ``--data`` on the synthetic
scenes at the CPU profile, like every space. benchmarks/README.md records a CPU-sized run on NYU.
"""

from ray import tune

from search_spaces.profiles import PAPER

DESCRIPTION = "the paper's recipe, + each option alone (flip, augment, encoder lr, warmup, one-cycle, EMA, TTA, SILog), + all"
ARCHS = ["mobilenet_unet"]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}

BASE = {"augment": "none", "encoder_lr_mult": 1.0, "warmup_epochs": 0.0, "schedule": "none", "ema": 0.0,
        "tta": False, "loss": "si_log", "lam": PAPER["lam"]}
OPTIONS = {
    "+flip": {"augment": "flip"},
    "+augment": {"augment": "standard"},  # flip + colour jitter + rotation / scale-crop
    "+encoder_lr": {"encoder_lr_mult": 0.1},  # encoder at lr/10, as Depth Anything fine-tunes
    "+warmup": {"warmup_epochs": 1.0},
    "+onecycle": {"schedule": "onecycle"},
    "+ema": {"ema": 0.999},
    "+tta": {"tta": True},
    "+silog": {"loss": "si_log_sqrt", "lam": 0.85},  # BTS / AdaBins' SILog
}
ALL = {k: v for option in OPTIONS.values() for k, v in option.items() if k != "warmup_epochs"}
VARIANTS = {"paper": {}, **OPTIONS, "all": ALL}  # "all": one-cycle has its own warmup


def _setting(key: str):
    def pick(config):
        return VARIANTS[config["tag"]].get(key, BASE[key])

    pick.__qualname__ = f"setting_{key}"
    return tune.sample_from(pick)


def space(archs: list[str] | None = None) -> dict:
    return {
        **PAPER,
        "arch": tune.grid_search(list(archs or ARCHS)),
        "tag": tune.grid_search(list(VARIANTS)),
        **{key: _setting(key) for key in BASE},
    }
