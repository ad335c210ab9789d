"""The paper's Table 1 plus its proposed next step: every architecture at the paper's settings
(lambda 0.5, AdamW lr 1e-4, weight decay 1e-3, 4 epochs, effective batch 16 = 2 x 8)."""

from ray import tune

from search_spaces.profiles import PAPER

DESCRIPTION = "every architecture of the model zoo at the paper's settings (Table 1 + segformer_unet)"
ARCHS = [
    "unet", "unetpp", "resnet_unet", "resnet_transformer", "mask2former_swin",
    "segformer_b4", "segformer_b5", "segformer_unet", "mobilenet_unet",
]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}


def space(archs: list[str] | None = None) -> dict:
    return {
        **PAPER,
        "arch": tune.grid_search(list(archs or ARCHS)),
    }
