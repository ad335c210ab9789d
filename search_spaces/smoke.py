"""Tiny variants, one short epoch: the space the tests and the cluster check run."""

from ray import tune

DESCRIPTION = "tiny models, one short epoch (tests, cluster checks)"
ARCHS = ["unet", "mobilenet_unet"]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}


def space(archs: list[str] | None = None) -> dict:
    return {
        "arch": tune.grid_search(list(archs or ARCHS)),
        "model_kwargs": {"size": "tiny"},
        "lam": 0.5,
        "lr": 1e-3,
        "epochs": 1,
        "batch_size": 2,
        "accum_steps": 1,
        "image_size": [32, 48],
        "max_steps_per_epoch": 2,
        "max_val_images": 4,
        "log_images": 1,
        "num_workers": 0,
        "pretrained": "no",
        "seed": 0,
    }
