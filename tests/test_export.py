"""grid.inference.model / grid.inference.export: load_model on each kind of path, predict on each kind of image, the
exported Hugging Face folder (config.json, model.safetensors, card) and its round trips."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file, save_file
from test_predict import make_checkpoint, make_experiment

import grid
from grid.cli import command
from grid.inference.checkpoints import CheckpointError
from grid.inference.export import ExportError, export
from grid.inference.model import DepthGridModel, is_export, load_model, portable
from grid.inference.predict import predict
from trainables.data import DataError
from trainables.models import MODELS

main = command("export")

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE = {"command": ["depth-grid", "run", "--space", "smoke"], "git": {"commit": "abc1234", "dirty": True},
              "versions": {"python": "3.11.7", "torch": "2.14.1", "ray": "2.60.0"}}


def _with_record(path: Path, lr: float) -> Path:
    """Add what a real trial's checkpoint holds besides the weights (grid.trainable's state)."""
    state = torch.load(path, weights_only=True)
    state.update(trial_config={"arch": "unet", "lr": lr, "lam": 0.5, "epochs": 3, "image_size": [32, 48]},
                 weights="none (from scratch)", provenance={**PROVENANCE, "device": "cpu"})
    state["metrics"].update(abs_rel=0.125, delta1=0.875, hostname="node-a")
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> Path:
    """An experiment of two finished trials (t1 the best) and one failed, as grid.run leaves it."""
    root = tmp_path_factory.mktemp("exp")
    best = _with_record(make_checkpoint(root / "ray/t1/checkpoint_000002/checkpoint.pt", seed=1), 1e-3)
    worse = _with_record(make_checkpoint(root / "ray/t2/checkpoint_000002/checkpoint.pt", seed=2), 1e-4)
    exp = make_experiment(root, [
        {"trial_id": "t2", "arch": "unet", "si_rmse": 0.4, "status": "finished", "checkpoint": str(worse)},
        {"trial_id": "t3", "arch": "unet", "status": "error", "checkpoint": ""},
        {"trial_id": "t1", "arch": "unet", "si_rmse": 0.2, "status": "finished", "checkpoint": str(best),
         "weights": "none (from scratch)"},
    ])
    info = json.loads((exp / "experiment.json").read_text())
    info.update(split_method="sequence", split_threshold=0.9, provenance=PROVENANCE)
    (exp / "experiment.json").write_text(json.dumps(info))
    return exp


def _ckpt(exp: Path, trial: str) -> Path:
    return exp.parents[1] / f"ray/{trial}/checkpoint_000002/checkpoint.pt"


def _photo(path: Path, size=(37, 53), seed=3) -> Path:
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _net_state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def _assert_same_weights(model: DepthGridModel, state: dict) -> None:
    own = model.net.state_dict()
    assert own.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(own[k], v), k


def test_export_writes_a_folder_that_from_pretrained_rebuilds(exp, tmp_path):
    out = export(exp, tmp_path / "f", command=["depth-grid", "export"])
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    # Everything needed to rebuild is in config.json: the class reads it, nobody names an architecture.
    assert {k: config[k] for k in ("arch", "kwargs", "image_size")} == {
        "arch": "unet", "kwargs": {"size": "tiny"}, "image_size": [32, 48]}
    assert config["data"]["format"] == "cil" and config["training_record"]["trial_id"] == "t1"
    model = DepthGridModel.from_pretrained(out)
    assert not model.training and model.image_size == (32, 48) and model.data == config["data"]
    _assert_same_weights(model, _net_state(_ckpt(exp, "t1")))
    assert set(load_file(out / "model.safetensors")) == {f"net.{k}" for k in _net_state(_ckpt(exp, "t1"))}

    photo = _photo(tmp_path / "photo.png")
    [npy] = predict(_ckpt(exp, "t1"), photo, tmp_path / "pred", device="cpu", png=False, progress=False)
    depth = model.predict(photo)
    assert depth.shape == (37, 53) and depth.dtype == np.float32 and np.log(depth).std() > 0.01
    np.testing.assert_allclose(depth, np.load(npy), rtol=1e-5)


def test_card_says_what_trained_the_model(exp, tmp_path):
    out = export(exp, tmp_path / "f", command=["depth-grid", "export", "--experiment", "x"])
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "depth-grid" and card.data.pipeline_tag == "depth-estimation"
    text = card.text
    for expected in [
        "# depth-grid unet (exp1)", "trial `t1` of experiment `exp1`", MODELS["unet"].description,
        "none (from scratch)", "32x48",  # weights it started from, input size
        "| dataset folder | data |", "| format | cil |", "`sequence`: images linked by embedding similarity (cosine >= 0.9",  # data, split
        "| lr | 0.001 |", "| lam | 0.5 |",  # the trial's settings
        "at epoch 3", "| si_rmse | 0.3 |", "| abs_rel | 0.125 |", "| delta1 | 0.875 |",  # its metrics
        "Experiment command: `depth-grid run --space smoke`", "torch 2.14.1", "`abc1234` (uncommitted changes)",
        "Trial device: cpu", "Export command: `depth-grid export --experiment x`",
        "Checkpoint (in the experiment's Tune storage): `t1/checkpoint_000002/checkpoint.pt`",
    ]:
        assert expected in text, expected
    assert "node-a" not in text  # hostnames are not metrics


# An absolute local path where a token starts: POSIX, home, Windows drive or UNC, file:// URI
# (not "a / b", not a URL's "://").
ABSOLUTE = re.compile(r"""(?:^|[\s`'"(=\[|,])(?:/(?=[^\s/])|//\w|~/|[A-Za-z]:[\\/]|\\\\|file://)""")


def _strings(value) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_an_export_names_no_absolute_local_path(exp, tmp_path):
    """Issue 20: config.json and the card of an export from an experiment whose every path is
    absolute (data root, split, storage, checkpoints, the commands that ran it) name none of them."""
    root = tmp_path / "abs"
    shutil.copytree(exp.parents[1], root)  # the fixture's whole tree: data, results, ray
    experiment = root / "results" / "exp1"
    info = json.loads((experiment / "experiment.json").read_text())
    info["data"]["root"], info["split"] = str(root / "data"), str(root / "results/splits/s.json")
    info.update(storage=str(root / "ray"), tune_dirs=[str(root / "ray")], provenance={
        **PROVENANCE, "command": ["depth-grid", "run", "--data", str(root / "data"), f"--results={root}/results",
                                  "--storage", f"file://{root}/ray", "--plugins", "C:\\Users\\me\\plugin.py"]})
    (experiment / "experiment.json").write_text(json.dumps(info))
    board = experiment / "leaderboard.csv"
    board.write_text(board.read_text().replace(str(exp.parents[1]), str(root)))
    ckpt = root / "ray/t1/checkpoint_000002/checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["trial_config"]["pretrained"] = str(root / "weights")  # a trial setting holding a path
    state["provenance"]["command"] = [str(root / ".venv/bin/python"), "-m", "grid.cli", "run", "--data", str(root / "data")]
    torch.save(state, ckpt)

    out = export(experiment, tmp_path / "f", command=["depth-grid", "export", "--experiment", str(experiment),
                                                      "--out", str(tmp_path / "f")])
    config_text, card = (out / "config.json").read_text(), (out / "README.md").read_text()
    config = json.loads(config_text)
    for text in (config_text, card, *_strings(config)):
        for local in (str(tmp_path), str(tmp_path.resolve()), str(root), tempfile.gettempdir() + "/", "C:\\"):
            assert local not in text, (local, text[:200])
        assert not ABSOLUTE.search(text), (ABSOLUTE.search(text), text[:200])
    # What predict needs and what says where the model came from are all still there, by name.
    assert config["data"] == {**info["data"], "root": "data"}
    # relative to the folder holding the experiment's Tune run ("ray" here; "smoke" after depth-grid run)
    assert config["training_record"]["checkpoint"] == "ray/t1/checkpoint_000002/checkpoint.pt"
    assert config["training_record"]["experiment_provenance"]["command"] == [
        "depth-grid", "run", "--data", "data", "--results=results", "--storage", "ray", "--plugins", "plugin.py"]
    assert config["training_record"]["trial_config"]["pretrained"] == "weights"
    assert "Export command: `depth-grid export --experiment exp1 --out f`" in card and "| dataset folder | data |" in card
    model = load_model(out, device="cpu")
    assert model.data == config["data"] and model.predict(_photo(tmp_path / "photo.png")).shape == (37, 53)


def test_portable_keeps_what_is_not_an_absolute_path():
    kept = ["depth-grid run --space smoke", "https://huggingface.co/me/depth", "s3://bucket/runs", "a / b",
            "relative/dir/file.png", "./here", "2.14.1+cu130", "H x W", "none (from scratch)", "1/2"]
    assert portable(kept) == kept
    assert portable({"data": {"root": "rel/nyu", "crop": [45, 471, 41, 601]}, "n": 3, "x": None}) == {
        "data": {"root": "nyu", "crop": [45, 471, 41, 601]}, "n": 3, "x": None}
    assert portable(["/a/b/c", "~/w", "x=/a/b", "C:\\d\\e", "C:/f/g", "\\\\host\\share\\h", "file:///i/j",
                     "see /k/l.", "(/m/n)"]) == ["c", "w", "x=b", "e", "g", "h", "j", "see l.", "(n)"]


def test_card_names_the_pretrained_source_a_trial_started_from():
    record = {"weights": "pretrained", "experiment": "e", "trial_id": "t"}
    model = DepthGridModel("segformer_b4", {"size": "tiny"}, [32, 48], training_record=record)
    assert f"Encoder weights it started from: pretrained: {MODELS['segformer_b4'].source}" in (
        model.generate_model_card().text)


def test_card_of_a_bare_checkpoint_says_what_is_not_recorded(tmp_path):
    model = load_model(make_checkpoint(tmp_path / "c" / "checkpoint.pt"), device="cpu")
    assert model.data is None and model.image_size == (32, 48)
    model.save_pretrained(tmp_path / "f")
    text = (tmp_path / "f" / "README.md").read_text()
    assert "from a trial checkpoint" in text and "Dataset: not recorded" in text
    assert "Train / validation split: not recorded" in text and "| si_rmse | 0.3 |" in text
    _assert_same_weights(load_model(tmp_path / "f", device="cpu"), _net_state(tmp_path / "c" / "checkpoint.pt"))


def test_trial_option_and_reexport(exp, tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["--experiment", str(exp), "--out", str(out)]) == 0
    assert main(["--experiment", str(exp), "--trial", "t2", "--out", str(out)]) == 0  # over an earlier export
    _assert_same_weights(DepthGridModel.from_pretrained(out), _net_state(_ckpt(exp, "t2")))
    assert "trial `t2`" in (out / "README.md").read_text()  # the card is rewritten, not kept
    assert "| lr | 0.0001 |" in (out / "README.md").read_text()
    capsys.readouterr()
    assert main(["--experiment", str(exp), "--trial", "t9", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no trial 't9'" in err and "t1" in err and "t3" not in err


@pytest.mark.parametrize("problem", ["not an experiment", "out holds other files"])
def test_export_errors_are_one_line(exp, tmp_path, capsys, problem):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    args = (["--experiment", str(tmp_path), "--out", str(tmp_path / "f")] if problem == "not an experiment"
            else ["--experiment", str(exp), "--out", str(other)])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert (other / "notes.txt").read_text() == "mine" and sorted(os.listdir(other)) == ["notes.txt"]


def test_push_without_network_fails_in_one_line_and_keeps_the_folder(exp, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # never try the network from a test
    with pytest.raises(ExportError, match=r"push to me/depth failed .*f is written"):
        export(exp, tmp_path / "f", push_to_hub="me/depth")
    assert is_export(tmp_path / "f")


def test_load_model_takes_each_kind_of_path(exp, tmp_path):
    photo = _photo(tmp_path / "photo.png")
    out = export(exp, tmp_path / "f")
    best = _ckpt(exp, "t1")
    models = {"experiment": load_model(exp, device="cpu"), "checkpoint": load_model(best, device="cpu"),
              "tune folder": load_model(best.parent, device="cpu"), "export": load_model(out, device="cpu"),
              "other trial": load_model(exp, trial="t2", device="cpu")}
    depths = {}
    for kind, model in models.items():
        assert isinstance(model, DepthGridModel) and not model.training, kind
        assert model.image_size == (32, 48), kind
        depths[kind] = model.predict(photo)
    recorded = json.loads((exp / "experiment.json").read_text())["data"]
    # the dataset by its folder's name (a config names no absolute local path), the rest as recorded
    assert models["experiment"].data == models["export"].data == {**recorded, "root": "data"}
    assert models["checkpoint"].data is None  # a checkpoint alone does not record the data
    for kind in ("checkpoint", "tune folder", "export"):
        np.testing.assert_array_equal(depths[kind], depths["experiment"], err_msg=kind)
    assert not np.allclose(depths["other trial"], depths["experiment"])
    assert grid.load_model is load_model


def test_predict_takes_a_path_a_pil_image_or_an_array(exp, tmp_path):
    model = load_model(exp, device="cpu")
    photo = _photo(tmp_path / "photo.png", size=(41, 29))
    rgb = np.asarray(Image.open(photo))
    by_path = model.predict(photo)
    assert by_path.shape == (41, 29)
    np.testing.assert_array_equal(model.predict(str(photo)), by_path)
    np.testing.assert_array_equal(model.predict(Image.open(photo)), by_path)
    np.testing.assert_array_equal(model.predict(Image.open(photo).convert("RGBA")), by_path)
    np.testing.assert_array_equal(model.predict(rgb), by_path)
    np.testing.assert_array_equal(model.predict(rgb[:, ::-1].copy()[:, ::-1]), by_path)  # a strided view
    for bad in (rgb.astype(np.float32), rgb[..., 0], rgb[..., :2], [[1, 2, 3]]):
        with pytest.raises(TypeError, match="uint8 .H, W, 3. array"):
            model.predict(bad)
    with pytest.raises(DataError, match="a folder"):
        model.predict(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        model.predict(tmp_path / "missing.png")


def test_load_model_refuses_what_it_cannot_use(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="not an experiment folder.*checkpoint.*exported folder"):
        load_model(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable PyTorch checkpoint"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="trial='t1' needs an experiment folder"):
        load_model(tmp_path / "junk.pt", trial="t1")
    with pytest.raises(TypeError, match=r"\['data'\] must be JSON values"):
        DepthGridModel("unet", {"size": "tiny"}, [32, 48], data={"root": Path("/d")})
    hf = tmp_path / "hf"  # another library's config.json
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "segformer"}))
    with pytest.raises(ValueError, match="not an experiment folder"):
        load_model(hf)


def test_a_weight_missing_from_the_file_is_an_error(tmp_path):
    DepthGridModel("unet", {"size": "tiny"}, [32, 48]).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights.pop(next(k for k in weights if k.endswith(".weight")))
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(RuntimeError, match="Missing key"):  # strict: never random weights by accident
        DepthGridModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_architecture_round_trips(name, tmp_path):
    torch.manual_seed(0)
    model = DepthGridModel(name, {"size": "tiny"}, [32, 48], data={"format": "cil", "crop": None})
    model.save_pretrained(tmp_path)
    again = DepthGridModel.from_pretrained(tmp_path)
    _assert_same_weights(again, model.net.state_dict())
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    np.testing.assert_array_equal(again.predict(image), model.predict(image))


def test_import_grid_stays_light():
    code = ("import sys, grid; light = 'torch' not in sys.modules; from grid import load_model; "
            "print(light, load_model.__module__)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "grid.inference.model"], out.stderr[-2000:]


def test_the_api_doc_example_runs(exp, tmp_path, monkeypatch, capsys):
    """docs/api.md's example, run as written in a folder holding results/smoke and photo.png."""
    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs/api.md").read_text(), re.S)
    shutil.copytree(exp, tmp_path / "results" / "smoke")
    _photo(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/api.md", "exec"), {})
    assert "unet (32, 48) cil" in capsys.readouterr().out
    assert is_export(tmp_path / "exported" / "smoke")


def _run(args: list[str], cwd: Path, env: dict, timeout: int = 600) -> str:
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.slow
def test_run_export_then_load_in_a_fresh_process(tmp_path):
    """Issue 14's check, literally: a smoke run on generated scenes, an export, then in another
    process load_model(F).predict(image) equals grid.predict's map for the same checkpoint, and
    DepthGridModel.from_pretrained(F) holds the checkpoint's weights."""
    from grid.inference.checkpoints import resolve_checkpoint
    from grid.synth import generate

    scenes = generate(tmp_path / "scenes", scenes=5, views=3, size=(40, 56), seed=1)
    ray_tmp = tempfile.mkdtemp(prefix="rx", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "HF_HUB_OFFLINE": "1"}
    py = sys.executable
    # The console command `pip install -e .` puts beside this Python (CI's fresh venv has it).
    script = Path(py).with_name("depth-grid")
    depth_grid = [str(script)] if script.is_file() else [py, "-m", "grid.cli"]
    try:
        _run([*depth_grid, "run", "--space", "smoke", "--data", str(scenes), "--results", str(tmp_path / "results"),
              "--gpus-per-trial", "0", "--verbose", "0"], tmp_path, env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    exp, folder = tmp_path / "results" / "smoke", tmp_path / "F"
    _run([*depth_grid, "export", "--experiment", str(exp), "--out", str(folder)], tmp_path, env)
    image = scenes / "sample_000004_rgb.png"
    ckpt = resolve_checkpoint(experiment=exp)
    _run([*depth_grid, "predict", "--checkpoint", str(ckpt), "--input", str(image), "--out", str(tmp_path / "p"),
          "--device", "cpu", "--workers", "0", "--no-png"], tmp_path, env)
    code = ("import sys, numpy as np, grid; "
            "np.save(sys.argv[2], grid.load_model(sys.argv[1], device='cpu').predict(sys.argv[3]))")
    _run([py, "-c", code, str(folder), str(tmp_path / "api.npy"), str(image)], tmp_path, env)

    api, cli = np.load(tmp_path / "api.npy"), np.load(tmp_path / "p" / "sample_000004_rgb.npy")
    assert api.shape == cli.shape == (40, 56) and api.dtype == np.float32
    np.testing.assert_allclose(api, cli, rtol=1e-5)
    _assert_same_weights(DepthGridModel.from_pretrained(folder), _net_state(ckpt))
    text = (folder / "README.md").read_text()
    assert "`sequence`: images linked by embedding similarity (cosine >= 0.9" in text and "built-in synthetic" not in text
    assert "| si_rmse |" in text and re.search(r"Export command: `.*export --experiment", text)
    for written in (text, (folder / "config.json").read_text()):  # issue 20: no absolute local path
        assert str(tmp_path) not in written and not ABSOLUTE.search(written), ABSOLUTE.search(written)
