"""Search spaces are plain data: valid trial settings, seeded, and all_models covers the zoo."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest

from grid.run import available_spaces
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
