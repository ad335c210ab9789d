"""grid.inference.predict: checkpoint loading, any-size inputs, batching, --experiment's choice, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_cil
from PIL import Image

from grid.cli import command
from grid.experiment.leaderboard import COLUMNS
from grid.inference.checkpoints import CheckpointError
from grid.inference.predict import (
    collect_inputs,
    load_checkpoint_model,
    predict,
    predict_items,
)
from grid.split.compute import Split
from trainables.dataset import normalize
from trainables.models import build_model

main = command("predict")


def make_checkpoint(path: Path, name: str = "unet", seed: int = 0, image_size=(32, 48),
                    arch_name: str | None = None) -> Path:
    """A real trial-format checkpoint of a tiny model whose output varies over the image.

    A fresh model predicts a constant (its head starts at zero weight), so the weights are
    jittered, and a few train-mode passes set batch-norm statistics so outputs stay near 3 m.
    ``arch_name`` records another architecture, as a mislabelled checkpoint would.
    """
    torch.manual_seed(seed)
    model = build_model(name, size="tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, 32, 48))
    arch = dict(model.arch_config)
    if arch_name:
        arch["name"] = arch_name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": {}, "epoch": 3, "arch_config": arch,
                "metrics": {"si_rmse": 0.3}, "image_size": list(image_size)}, path)
    return path


def make_experiment(root: Path, trials: list[dict], n: int = 6, size=(24, 32)) -> Path:
    """An experiment folder as grid.run writes it: data, split JSON, experiment.json, leaderboard."""
    data = write_cil(root / "data", n=n, size=size)
    names = [f"sample_{i:06d}_rgb.png" for i in range(n)]
    exp = root / "results" / "exp1"
    exp.mkdir(parents=True)
    Split(train=names[: n - 2], val=names[n - 2:],  # clusters of two stay on one side
          cluster_of={nm: i // 2 for i, nm in enumerate(names)}, params={}, embedding_model="test",
          fingerprint="f", report={}).to_json(exp.parent / "splits" / "s.json")
    info = {"name": "exp1", "space": "smoke", "storage": str(root / "ray"),
            "data": {"root": str(data), "format": "cil", "list_file": None, "depth_scale": 1.0,
                     "crop": None},
            "split": str(exp.parent / "splits" / "s.json"), "image_size": [24, 32],
            "synthetic": False}
    (exp / "experiment.json").write_text(json.dumps(info))
    rows = [{c: t.get(c, "") for c in COLUMNS} for t in trials]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(exp / "leaderboard.csv", index=False)
    return exp


def reference_depth(model: torch.nn.Module, rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What a prediction must be, written out independently of grid.predict: ImageNet
    normalisation, antialiased bilinear resize to the model's input, forward, bilinear resize of
    the log-depth back to the image's own size (pixel centres aligned), exp."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None] - mean) / std
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        log_depth = model.eval().forward_log(x)
    out = torch.nn.functional.interpolate(log_depth, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    return out.exp()[0, 0].numpy()


def _odd_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir()
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(root / "c.png")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "checkpoint.pt")


def test_predictions_keep_each_input_size(ckpt, tmp_path):
    src = _odd_folder(tmp_path / "in")
    assert main(["--checkpoint", str(ckpt), "--input", str(src), "--out", str(tmp_path / "out"),
                 "--workers", "0", "--batch-size", "2"]) == 0
    shapes = {p.stem: np.load(p).shape for p in (tmp_path / "out").glob("*.npy")}
    assert shapes == {"a": (37, 53), "b": (20, 30), "c": (37, 53)}
    for stem in shapes:
        depth = np.load(tmp_path / "out" / f"{stem}.npy")
        assert depth.dtype == np.float32 and np.isfinite(depth).all() and (depth > 0).all()
        assert depth.std() > 0  # a real prediction, not a constant fill
        png = np.asarray(Image.open(tmp_path / "out" / f"{stem}.png").convert("RGB"))
        assert png.shape[0] > 37 and len(np.unique(png.reshape(-1, 3), axis=0)) > 20


def test_native_size_matches_a_direct_forward(ckpt, tmp_path):
    """Fed at its own size, the written map is exactly the model's output: nothing is shifted."""
    src = _odd_folder(tmp_path / "in")
    [npy] = predict(ckpt, src / "a.png", tmp_path / "out", image_size=(37, 53), device="cpu",
                    png=False, progress=False)
    model, info = load_checkpoint_model(ckpt.parent)  # a Tune checkpoint folder works too
    assert info["path"] == ckpt.resolve() and info["image_size"] == (32, 48)
    with torch.no_grad():
        expected = model(normalize(np.array(Image.open(src / "a.png")))[None])[0, 0].numpy()
    np.testing.assert_allclose(np.load(npy), expected, rtol=1e-5)


def test_resized_prediction_matches_an_explicit_reference(ckpt, tmp_path):
    """At the checkpoint's input size (32x48) a 37x53 image is resized in, predicted and resized
    back: the map equals the written-out reference, so a flipped or shifted upsample fails."""
    src = _odd_folder(tmp_path / "in")
    [npy] = predict(ckpt, src / "a.png", tmp_path / "out", device="cpu", png=False, progress=False)
    model, info = load_checkpoint_model(ckpt)
    expected = reference_depth(model, np.array(Image.open(src / "a.png")), info["image_size"])
    depth = np.load(npy)
    assert depth.shape == (37, 53) and np.log(expected).std() > 0.01  # varies across the image
    np.testing.assert_allclose(depth, expected, rtol=1e-5)


def test_batching_does_not_change_results(ckpt, tmp_path):
    src = _odd_folder(tmp_path / "in")
    one = predict(ckpt, src, tmp_path / "b1", batch_size=1, device="cpu", png=False, progress=False)
    many = predict(ckpt, src, tmp_path / "b3", batch_size=3, device="cpu", png=False, progress=False)
    for p, q in zip(one, many, strict=True):
        np.testing.assert_allclose(np.load(p), np.load(q), rtol=1e-5, atol=1e-6)


def test_list_file_input_names_outputs_after_depth_entries(ckpt, tmp_path):
    data = write_cil(tmp_path / "d", n=3, size=(21, 35))
    paths = predict(ckpt, data / "train_list.txt", tmp_path / "out", device="cpu", progress=False)
    assert [p.name for p in paths] == [f"sample_{i:06d}_depth.npy" for i in range(3)]
    assert all(np.load(p).shape == (21, 35) for p in paths)


def test_input_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        collect_inputs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        collect_inputs(tmp_path / "empty")
    (tmp_path / "dup").mkdir()
    for suffix in (".png", ".jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / "dup" / f"x{suffix}")
    with pytest.raises(ValueError, match="overwrite"):
        collect_inputs(tmp_path / "dup")


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    bad = make_checkpoint(tmp_path / "c.pt", arch_name="mobilenet_unet")
    with pytest.raises(CheckpointError, match=r"c\.pt.*do not fit architecture 'mobilenet_unet'"):
        load_checkpoint_model(bad)


def test_checkpoint_of_another_width_is_refused(tmp_path):
    path = make_checkpoint(tmp_path / "c.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["arch_config"]["kwargs"]["channels"] = [8, 16, 32, 64]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint_model(path)


@pytest.mark.parametrize("content, problem", [
    (b"\x00garbage" * 50, "not a readable PyTorch checkpoint"),
    (None, "not a depth-grid trial checkpoint"),  # a bare state dict
])
def test_corrupt_or_foreign_file_is_refused(tmp_path, content, problem):
    path = tmp_path / "broken.pt"
    if content is None:
        torch.save(build_model("unet", size="tiny").state_dict(), path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"broken\.pt: {problem}"):
        load_checkpoint_model(path)


def test_truncated_checkpoint_gives_a_clear_cli_error(ckpt, tmp_path, capsys):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[:2000])
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["--checkpoint", str(cut), "--input", str(img), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cut.pt" in err and "not a readable PyTorch checkpoint" in err


def test_unknown_architecture_lists_valid_names(tmp_path):
    path = make_checkpoint(tmp_path / "c.pt", arch_name="no_such_net")
    with pytest.raises(CheckpointError, match="no_such_net.*valid:.*unet"):
        load_checkpoint_model(path)


def test_experiment_uses_the_best_row(tmp_path):
    good = make_checkpoint(tmp_path / "t1" / "checkpoint.pt", seed=1)
    worse = make_checkpoint(tmp_path / "t2" / "checkpoint.pt", seed=2)
    # The worse trial is listed first: the choice must come from si_rmse, not row order.
    exp = make_experiment(tmp_path, [
        {"trial_id": "t2", "arch": "unet", "si_rmse": 0.40, "status": "finished", "checkpoint": str(worse)},
        {"trial_id": "t3", "arch": "unet", "status": "error", "checkpoint": ""},
        {"trial_id": "t1", "arch": "unet", "si_rmse": 0.20, "status": "finished", "checkpoint": str(good)},
    ])
    img = tmp_path / "data" / "sample_000000_rgb.png"
    common = ["--input", str(img), "--workers", "0", "--no-png"]
    assert main(["--experiment", str(exp), "--out", str(tmp_path / "e"), *common]) == 0
    assert main(["--checkpoint", str(good), "--out", str(tmp_path / "g"), *common]) == 0
    assert main(["--checkpoint", str(worse), "--out", str(tmp_path / "w"), *common]) == 0
    chosen = np.load(tmp_path / "e" / "sample_000000_rgb.npy")
    np.testing.assert_array_equal(chosen, np.load(tmp_path / "g" / "sample_000000_rgb.npy"))
    assert not np.allclose(chosen, np.load(tmp_path / "w" / "sample_000000_rgb.npy"))


def test_native_input_groups_same_size_images(ckpt, tmp_path):
    """Without a resize, only same-size images can share a batch; each keeps its own size."""
    model, _ = load_checkpoint_model(ckpt)
    items, spec = collect_inputs(_odd_folder(tmp_path / "in"))
    out = dict(predict_items(model, items, spec, image_size=None, batch_size=3, progress=False))
    assert {items[i].name: d.shape for i, d in out.items()} == {
        "a.png": (37, 53), "b.jpg": (20, 30), "c.png": (37, 53)}


# ---- the output rule (grid.inference.outputs) and one-line errors ---------------------------------

def _digests(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_predictions_never_replace_the_ground_truth(ckpt, tmp_path, capsys, extra):
    data = write_cil(tmp_path / "d", n=3)
    before = _digests(data)
    args = ["--checkpoint", str(ckpt), "--input", str(data / "train_list.txt"), "--out", str(data), "--workers", "0"]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert "sample_000000_depth.npy: --out would replace a ground-truth depth file" in err and err.count("\n") == 1
    assert _digests(data) == before  # refused before anything was written


def test_a_hard_link_to_the_ground_truth_is_the_ground_truth(ckpt, tmp_path, capsys):
    data = write_cil(tmp_path / "d", n=2)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "sample_000001_depth.npy").hardlink_to(data / "sample_000001_depth.npy")
    assert main(["--checkpoint", str(ckpt), "--input", str(data), "--out", str(tmp_path / "p"), "--overwrite"]) == 2
    assert "sample_000001_depth.npy: --out would replace a ground-truth depth file" in capsys.readouterr().err


def test_a_rerun_replaces_its_own_outputs_and_a_foreign_file_needs_overwrite(ckpt, tmp_path, capsys):
    src = _odd_folder(tmp_path / "in")
    out = tmp_path / "out"
    args = ["--checkpoint", str(ckpt), "--input", str(src), "--out", str(out), "--workers", "0"]
    assert main(args) == 0 and main(args) == 0  # the second run replaces what the first wrote
    assert sorted(json.loads((out / ".depth-grid-outputs.json").read_text())["files"]) == [
        "a.npy", "a.png", "b.npy", "b.png", "c.npy", "c.png"]
    (out / "b.png").unlink()
    (out / "b.png").write_text("my own drawing")
    (out / ".depth-grid-outputs.json").unlink()  # as if another tool had made the folder
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "a.npy: exists and depth-grid did not write it; pass --overwrite" in err
    assert (out / "b.png").read_text() == "my own drawing"
    assert main([*args, "--overwrite"]) == 0
    assert Image.open(out / "b.png").format == "PNG"


def test_outputs_never_go_over_an_input_image(ckpt, tmp_path, capsys):
    src = _odd_folder(tmp_path / "in")
    before = _digests(src)
    assert main(["--checkpoint", str(ckpt), "--input", str(src), "--out", str(src), "--overwrite"]) == 2
    assert "a.png: --out would replace an input image" in capsys.readouterr().err
    assert _digests(src) == before


@pytest.mark.parametrize("content, problem", [
    (b"", "empty file"),
    (b"hello\nworld\n", "neither the zip archive nor the pickle torch.save writes"),
    (b"\x80\x02h\x05.", "KeyError"),  # the weights-only unpickler's own error on a foreign pickle
])
def test_foreign_bytes_are_one_checkpoint_error(tmp_path, content, problem):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"c\.pt: not a readable PyTorch checkpoint \(.*{problem}"):
        load_checkpoint_model(path)


def test_a_zip_of_other_things_is_not_a_checkpoint(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "c.pt", "w") as archive:
        archive.writestr("notes.txt", "not weights")
    with pytest.raises(CheckpointError, match=r"c\.pt: .*a zip archive of notes\.txt, without torch\.save's data\.pkl"):
        load_checkpoint_model(tmp_path / "c.pt")


def test_a_corrupt_image_read_by_a_worker_is_one_line(ckpt, tmp_path, capsys):
    src = _odd_folder(tmp_path / "in")
    (src / "c.png").write_bytes((src / "c.png").read_bytes()[:200])  # a valid header, then nothing
    assert main(["--checkpoint", str(ckpt), "--input", str(src), "--out", str(tmp_path / "o"), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {src / 'c.png'}: unreadable or corrupt image (image file is truncated)"]
