"""Search spaces are plain data: valid trial settings, seeded, and all_models covers the zoo."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest

from grid.experiment.spaces import available_spaces
from trainables.config import TrialConfig
from trainables.models import MODELS

FIELDS = {f.name for f in dataclasses.fields(TrialConfig)}


@pytest.mark.parametrize("name", available_spaces())
def test_space_is_valid_plain_data(name: str) -> None:
    mod = importlib.import_module(f"search_spaces.{name}")
    assert set(mod.ARCHS) <= set(MODELS), f"{name}: unknown architectures"
    assert isinstance(mod.SEARCH["seed"], int)
    space = mod.space(mod.ARCHS[:1])
    assert set(space) <= FIELDS, f"{name}: unknown keys {set(space) - FIELDS}"


def test_all_models_is_the_paper_zoo_and_depth_models_the_rest() -> None:
    """all_models: the paper's Table 1 plus SegFormer + U-Net decoder; depth_models: the
    depth-pretrained architectures beside the paper's best two. Together: the whole zoo."""
    mod = importlib.import_module("search_spaces.all_models")
    depth = importlib.import_module("search_spaces.depth_models")
    assert sorted(mod.ARCHS) == ["mask2former_swin", "mobilenet_unet", "resnet_transformer", "resnet_unet",
                                 "segformer_b4", "segformer_b5", "segformer_unet", "unet", "unetpp"]
    assert set(mod.ARCHS) | set(depth.ARCHS) == set(MODELS)
    assert set(mod.ARCHS) & set(depth.ARCHS) == {"segformer_b5", "resnet_unet"}
    assert mod.space()["arch"] == {"grid_search": mod.ARCHS}


def test_spaces_import_no_model_code() -> None:
    code = ("import sys, importlib; [importlib.import_module(f'search_spaces.{n}') for n in "
            f"{available_spaces()!r}]; print(sorted(m for m in sys.modules if m.startswith(('trainables', "
            "'torch', 'transformers', 'timm', 'segmentation_models_pytorch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_recipe_space_is_the_paper_then_each_option_alone_then_all() -> None:
    """Each variant differs from the paper's recipe in exactly its option's settings; the paper
    row is the paper's recipe itself; every concrete config is a valid trial."""
    from grid.experiment.plan import concrete_configs
    from search_spaces import recipe
    from search_spaces.profiles import PAPER

    configs = {c["tag"]: c for c in concrete_configs(recipe.space(["resnet_unet"]))}
    assert list(configs) == ["paper", *recipe.OPTIONS, "all"]
    paper = configs["paper"]
    assert {k: paper[k] for k in PAPER} == PAPER and paper["arch"] == "resnet_unet"
    assert TrialConfig.from_dict(paper).augment == "none" and paper["schedule"] == "none"
    for tag, option in recipe.OPTIONS.items():
        changed = {k for k in paper if configs[tag][k] != paper[k]} - {"tag"}
        assert changed == set(option), tag
    assert all(configs["all"][k] == v for k, v in recipe.ALL.items())
    for config in configs.values():
        TrialConfig.from_dict(config)


def test_the_data_efficiency_space_is_fractions_by_architectures_at_the_paper_settings() -> None:
    """Every architecture at every fraction, everything else the paper's recipe; valid trials."""
    from grid.experiment.plan import concrete_configs
    from search_spaces import data_efficiency
    from search_spaces.profiles import PAPER

    configs = concrete_configs(data_efficiency.space())
    assert data_efficiency.FRACTIONS == [0.05, 0.1, 0.25, 0.5, 1.0]
    assert len(data_efficiency.ARCHS) >= 2 and set(data_efficiency.ARCHS) <= set(MODELS)
    assert sorted((c["arch"], c["train_fraction"]) for c in configs) == sorted(
        (a, f) for a in data_efficiency.ARCHS for f in data_efficiency.FRACTIONS)
    for config in configs:
        assert {k: config[k] for k in PAPER} == PAPER
        assert TrialConfig.from_dict(config).train_fraction == config["train_fraction"]
    assert "how much training data" in data_efficiency.DESCRIPTION


def test_the_depth_models_space_is_every_depth_checkpoint_and_the_papers_best_at_its_settings() -> None:
    """Each released checkpoint of the depth-pretrained architectures once (its tag names it),
    plus segformer_b5 and resnet_unet, all at the paper's recipe; ``--arch`` keeps an architecture's
    checkpoints; every concrete config is a valid trial whose Hub repo the catalog knows."""
    from grid.experiment.plan import concrete_configs
    from search_spaces import depth_models
    from search_spaces.profiles import PAPER
    from trainables.models.catalog import BUILT_IN

    configs = concrete_configs(depth_models.space())
    assert [c["tag"] for c in configs] == list(depth_models.VARIANTS)
    assert {"segformer_b5", "resnet_unet"} <= {c["arch"] for c in configs}
    repos = set()
    for config in configs:
        assert {k: config[k] for k in PAPER} == PAPER
        cfg = TrialConfig.from_dict(config)
        assert (cfg.arch, cfg.model_kwargs) == depth_models.VARIANTS[cfg.tag]
        repos.add(BUILT_IN[cfg.arch].hub_repo(cfg.model_kwargs))
    assert len(repos) == len(configs)  # no checkpoint twice
    only = concrete_configs(depth_models.space(["glpn", "unet"]))
    assert [(c["tag"], c["arch"]) for c in only] == [("glpn-nyu", "glpn"), ("glpn-kitti", "glpn"), ("unet", "unet")]
    assert "does segmentation transfer beat depth pretraining?" in depth_models.DESCRIPTION
