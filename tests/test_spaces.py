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


def test_all_models_is_the_whole_zoo() -> None:
    mod = importlib.import_module("search_spaces.all_models")
    assert sorted(mod.ARCHS) == sorted(MODELS)
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
