"""Transfer learning on a CPU: MobileNetV2-U-Net with its ImageNet encoder (weights available
offline) against a U-Net trained from scratch, at reduced resolution, sized for a 2-core CPU."""

from ray import tune

DESCRIPTION = "mobilenet_unet (ImageNet) vs unet (scratch) at 128x160, sized for a 2-core CPU"
ARCHS = ["mobilenet_unet", "unet"]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}
PRETRAINED = {"mobilenet_unet": "yes", "unet": "no"}  # unet has no pretrained weights


def _pretrained(spec) -> str:
    return PRETRAINED.get(spec.config.arch, "yes")


def space(archs: list[str] | None = None) -> dict:
    return {
        "arch": tune.grid_search(list(archs or ARCHS)),
        "pretrained": tune.sample_from(_pretrained),
        "model_kwargs": {"size": "small"},
        "lam": 0.5,
        "lr": 3e-4,
        "weight_decay": 1e-3,
        "epochs": 5,
        "batch_size": 8,
        "accum_steps": 1,
        "image_size": [128, 160],
        "num_workers": 0,
        "schedule": "cosine",
        "seed": 0,
    }
