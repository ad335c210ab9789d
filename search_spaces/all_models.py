"""The paper's Table 1 plus its proposed next step: every architecture at the paper's settings
(lambda 0.5, AdamW lr 1e-4, weight decay 1e-3, 4 epochs, effective batch 16 = 2 x 8)."""

from ray import tune

DESCRIPTION = "every architecture of the model zoo at the paper's settings (Table 1 + segformer_unet)"
ARCHS = [
    "unet", "unetpp", "resnet_unet", "resnet_transformer", "mask2former_swin",
    "segformer_b4", "segformer_b5", "segformer_unet", "mobilenet_unet",
]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}


def space(archs: list[str] | None = None) -> dict:
    return {
        "arch": tune.grid_search(list(archs or ARCHS)),
        "lam": 0.5,
        "lr": 1e-4,
        "weight_decay": 1e-3,
        "epochs": 4,
        "batch_size": 2,
        "accum_steps": 8,
        "pretrained": "yes",
        "seed": 0,
    }
