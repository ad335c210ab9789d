"""Optuna (TPE) over lr, lambda and weight decay, one study per architecture, with ASHA
stopping weak trials after each epoch. Optuna rejects grid_search, so the architecture is fixed
per study and ``depth-grid run`` runs one study for each name in ``--arch`` (default: ARCHS)."""

from ray import tune

from search_spaces.profiles import PAPER

DESCRIPTION = "OptunaSearch over lr, lambda, weight decay per architecture, ASHA early stopping"
ARCHS = ["resnet_unet", "segformer_b4", "segformer_unet"]
SEARCH = {
    "algorithm": "optuna", "num_samples": 16, "seed": 0, "per_arch": True,
    "scheduler": "asha", "grace_period": 1, "reduction_factor": 2,
}


def space(archs: list[str] | None = None) -> dict:
    (arch,) = archs or ARCHS[:1]  # one study per architecture
    return {
        **PAPER,
        "arch": arch,
        "lam": tune.uniform(0.0, 1.0),
        "lr": tune.loguniform(1e-5, 1e-3),
        "weight_decay": tune.loguniform(1e-4, 1e-1),
    }
