"""The scale-invariance weight lambda against the learning rate, for one chosen architecture."""

from ray import tune

from search_spaces.profiles import PAPER

DESCRIPTION = "lambda {0, 0.5, 0.85, 1} x lr {3e-5, 1e-4, 3e-4} for one architecture (--arch)"
ARCHS = ["segformer_b4"]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}


def space(archs: list[str] | None = None) -> dict:
    return {
        **PAPER,
        "arch": tune.grid_search(list(archs or ARCHS)),
        "lam": tune.grid_search([0.0, 0.5, 0.85, 1.0]),
        "lr": tune.grid_search([3e-5, 1e-4, 3e-4]),
    }
