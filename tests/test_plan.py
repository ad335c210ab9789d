"""The whole plan is validated before Ray starts: every grid point and every domain bound goes
through TrialConfig, so a wrong value fails in a second, naming the key, value and rule."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray import tune

from grid.cli import command
from grid.experiment.config import RunConfig
from grid.experiment.plan import SPLIT_METHODS, check_plan, concrete_configs
from grid.experiment.spaces import load_space, studies
from grid.split.compute import METHODS
from trainables.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_a_wrong_setting_fails_in_seconds_with_no_ray_and_nothing_written(tmp_path: Path) -> None:
    code = ("import sys, ray; from grid.cli import command; rc = command('run')(sys.argv[1:]); "
            "print('ray-initialized' if ray.is_initialized() else 'no-ray'); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, "--set", "lr=-1"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 2, out.stderr
    assert "lr=-1.0 must be a positive number" in out.stderr
    assert out.stdout.strip() == "no-ray"
    assert list(tmp_path.iterdir()) == []  # no results/, no split, no synthetic scenes
    assert elapsed < 10, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("setting,message", [
    ("lam=3", "lam=3.0 must be in [0, 1]"),
    ("pretrained=maybe", "pretrained='maybe' must be one of"),
    ("epochs=0", "epochs=0 must be >= 1"),
    ("image_size=[4,4]", "image_size=(4, 4) must be (H, W), each >= 8"),
])
def test_cli_values_are_checked_for_every_space(setting: str, message: str, capsys) -> None:
    main = command("run")

    for space in ("all_models", "cpu_transfer", "optuna"):
        assert main(["--space", space, "--set", setting]) == 2
        assert message in capsys.readouterr().err


def test_domains_are_checked_at_their_bounds_and_categories() -> None:
    good = {"arch": tune.grid_search(["unet", "unetpp"]), "lr": tune.loguniform(1e-5, 1e-2),
            "lam": tune.choice([0.0, 0.5, 1.0]), "epochs": tune.randint(1, 5)}
    configs = concrete_configs(good)
    assert len(configs) == 2 * 2 * 3 * 2
    assert {c["epochs"] for c in configs} == {1, 4}  # randint's upper bound is exclusive
    assert check_plan([("ok", good)]) == 24
    with pytest.raises(ConfigError, match=r"experiment 'bad': trial setting lr=-1.0"):
        check_plan([("bad", {**good, "lr": tune.uniform(-1, 1)})])
    with pytest.raises(ConfigError, match="pretrained='maybe'"):
        check_plan([("bad", {**good, "pretrained": tune.choice(["yes", "maybe"])})])


def test_sample_from_settings_are_resolved_per_grid_point() -> None:
    """cpu_transfer picks ``pretrained`` per architecture with sample_from."""
    plan = studies(load_space("cpu_transfer"), RunConfig(space="cpu_transfer"), cpu_profile=False)
    by_arch = {c["arch"]: c["pretrained"] for c in concrete_configs(plan[0][1])}
    assert by_arch == {"mobilenet_unet": "yes", "unet": "no"}
    assert check_plan(plan) == 2


def test_split_methods_named_without_torch_match_grid_split() -> None:
    assert set(SPLIT_METHODS) == set(METHODS)
