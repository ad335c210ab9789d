"""Transfer learning on a CPU: MobileNetV2-U-Net with its ImageNet encoder (weights available
offline) against a U-Net trained from scratch, with the same recipe, sized for a 2-core CPU.

The recipe is the best one benchmarks/README.md measured within the 25-minute budget (both
trials at once, one core each, the split's embeddings included): 192x256 inputs, cosine lr,
BTS/AdaBins' SILog (lambda 0.85), flips plus colour / rotation / scale-crop augmentation, an
EMA of the weights and flip test-time averaging. The control's U-Net is sized to take about as
long per epoch as the pretrained model, so both finish together.
"""

from ray import tune

DESCRIPTION = "mobilenet_unet (ImageNet) vs unet (scratch), best measured recipe, sized for a 2-core CPU"
ARCHS = ["mobilenet_unet", "unet"]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}
PRETRAINED = {"mobilenet_unet": "yes", "unet": "no"}  # unet has no pretrained weights
MODEL_KWARGS = {"mobilenet_unet": {"size": "small"}, "unet": {"channels": [12, 24, 48, 96, 192]}}


def _pretrained(config) -> str:
    return PRETRAINED.get(config["arch"], "yes")


def _model_kwargs(config) -> dict:
    return MODEL_KWARGS.get(config["arch"], {"size": "small"})


def space(archs: list[str] | None = None) -> dict:
    return {
        "arch": tune.grid_search(list(archs or ARCHS)),
        "pretrained": tune.sample_from(_pretrained),
        "model_kwargs": tune.sample_from(_model_kwargs),
        "lam": 0.85,
        "loss": "si_log_sqrt",
        "lr": 5e-4,
        "weight_decay": 1e-3,
        "epochs": 9,
        "batch_size": 8,
        "accum_steps": 1,
        "image_size": [192, 256],
        "num_workers": 0,
        "schedule": "cosine",
        "augment": "standard",
        "ema": 0.999,
        "tta": True,
        "seed": 0,
    }
