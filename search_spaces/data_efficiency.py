"""Data efficiency: does "minimal" fine-tuning need all the data? Each architecture at the
paper's settings trains on 5%, 10%, 25%, 50% and all of the training side of the split.

``train_fraction`` keeps whole split clusters (``trainables.subset``), so a smaller subset
drops whole scenes instead of thinning each one, and the fractions are nested at one seed (the
10% subset is inside the 25% one). The architectures: a U-Net trained from scratch, a CNN
encoder (ResNet) and a transformer encoder (SegFormer-b4), both pretrained, so the curves show
how much pretraining buys at each data size. ``depth-grid figures`` draws si_rmse against the
number of training images per architecture; with ``--seeds K`` every point is K seeds (each
seed also draws its own subset) and the figure shows their spread.
"""

from ray import tune

from search_spaces.profiles import PAPER

DESCRIPTION = ("how much training data does fine-tuning need? train_fraction {0.05, 0.1, 0.25, 0.5, 1} "
               "x scratch U-Net, ResNet-UNet, SegFormer-b4 at the paper's settings")
ARCHS = ["unet", "resnet_unet", "segformer_b4"]
FRACTIONS = [0.05, 0.1, 0.25, 0.5, 1.0]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}


def space(archs: list[str] | None = None) -> dict:
    return {
        **PAPER,
        "arch": tune.grid_search(list(archs or ARCHS)),
        "train_fraction": tune.grid_search(list(FRACTIONS)),
    }
