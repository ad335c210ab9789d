"""grid.inference.submit: the competition CSV decodes back to the clamped, rounded predictions, in list order."""

from __future__ import annotations

import base64
import random
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import write_cil
from PIL import Image
from test_predict import make_checkpoint, reference_depth

from grid.cli import command
from grid.inference.predict import load_checkpoint_model
from grid.inference.submit import decode_row, encode_depth, read_submission

main = command("submit")


def _test_set(root: Path, n: int = 5) -> tuple[Path, list[str]]:
    """A Kaggle-style test folder: test_list.txt beside test/, no depth files, shuffled order."""
    data = write_cil(root / "test", n=n, size=(23, 31), list_name="test_list.txt")
    for f in data.glob("*_depth.npy"):
        f.unlink()
    lines = (data / "test_list.txt").read_text().splitlines()
    random.Random(3).shuffle(lines)  # list order differs from file-name order
    assert lines != sorted(lines)
    lines[1] = lines[1].split()[0]  # an RGB-only line: its depth name is derived
    (root / "test_list.txt").write_text("\n".join(lines) + "\n")
    (data / "test_list.txt").unlink()
    ids = [ln.split()[0].replace("_rgb.png", "_depth") for ln in lines]
    return root, ids


def _decode(cell: str) -> np.ndarray:
    """The competition's decoding, written out: base64 -> zlib -> comma-separated floats."""
    return np.array([float(v) for v in zlib.decompress(base64.b64decode(cell)).decode().split(",")])


def test_submission_decodes_to_clamped_rounded_predictions_in_list_order(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ck" / "checkpoint.pt")
    data, ids = _test_set(tmp_path / "kaggle")
    out = tmp_path / "sub" / "submission.csv"
    assert main(["--checkpoint", str(ckpt), "--data", str(data), "--out", str(out),
                 "--workers", "0", "--batch-size", "2"]) == 0
    assert out.read_text().splitlines()[0] == "id,Depths"
    rows = read_submission(out)
    assert [r[0] for r in rows] == ids
    # The reference is written out independently of grid.predict (tests/test_predict.py).
    model, info = load_checkpoint_model(ckpt)
    for ident, cell in rows:
        rgb = np.array(Image.open(data / "test" / ident.replace("_depth", "_rgb.png")))
        ref = reference_depth(model, rgb, info["image_size"])
        # The .npy named by the list is written beside the CSV, unrounded.
        np.testing.assert_allclose(np.load(out.parent / f"{ident}.npy"), ref, rtol=1e-5)
        # The cell: clamped to >= 0.01 m and rounded to 2 decimals. Where the reference sits
        # within float error of a rounding boundary, either neighbour is right.
        cell_values = _decode(cell).reshape(ref.shape)
        expected = np.round(np.maximum(ref.astype(np.float64), 0.01), 2)
        assert (np.abs(cell_values - expected) < 1e-9).mean() > 0.999
        np.testing.assert_allclose(cell_values, expected, atol=0.0100001)
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no temp file


def test_encoding_clamps_rounds_and_keeps_row_major_order():
    depth = np.array([[0.0, -1.0, 0.004], [0.016, 1.234, 2.346], [10.0, 3.0, np.float32(0.5)]],
                     dtype=np.float32)
    text = zlib.decompress(base64.b64decode(encode_depth(depth))).decode()
    assert text == "0.01,0.01,0.01,0.02,1.23,2.35,10.00,3.00,0.50"
    np.testing.assert_allclose(decode_row(encode_depth(depth), shape=(3, 3)),
                               [[0.01, 0.01, 0.01], [0.02, 1.23, 2.35], [10.0, 3.0, 0.5]])


def test_decode_row_rejects_garbage():
    with pytest.raises(ValueError, match="not a valid Depths cell"):
        decode_row("%%% not base64")


def test_npy_dir_and_bad_checkpoint(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ck" / "checkpoint.pt")
    data, ids = _test_set(tmp_path / "kaggle", n=2)
    out = tmp_path / "submission.csv"
    assert main(["--checkpoint", str(ckpt), "--data", str(data), "--out", str(out),
                 "--npy-dir", str(tmp_path / "npy"), "--workers", "0"]) == 0
    assert sorted(p.stem for p in (tmp_path / "npy").glob("*.npy")) == sorted(ids)
    broken = tmp_path / "broken.pt"
    broken.write_text("not a checkpoint")
    assert main(["--checkpoint", str(broken), "--data", str(data), "--out", str(tmp_path / "x.csv")]) == 2
    assert "broken.pt" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_the_maps_never_replace_the_ground_truth(tmp_path, capsys):
    """Issue 25: a submission of the training list beside its data would have replaced every depth file."""
    ckpt = make_checkpoint(tmp_path / "ck" / "checkpoint.pt")
    data = write_cil(tmp_path / "d", n=3)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    for extra in ([], ["--overwrite"]):
        assert main(["--checkpoint", str(ckpt), "--data", str(data), "--list", "train_list.txt",
                     "--out", str(data / "submission.csv"), "--workers", "0", *extra]) == 2
        err = capsys.readouterr().err
        assert "_depth.npy: a map beside --out would replace a ground-truth depth file" in err, err
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before  # nothing written, not even the CSV


def test_a_rerun_replaces_its_own_submission_and_a_foreign_csv_needs_overwrite(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ck" / "checkpoint.pt")
    data, ids = _test_set(tmp_path / "kaggle", n=2)
    out = tmp_path / "sub" / "submission.csv"
    args = ["--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--workers", "0"]
    assert main(args) == 0 and main(args) == 0
    other = tmp_path / "mine.csv"
    other.write_text("my own table\n")
    capsys.readouterr()
    assert main([*args[:-4], "--out", str(other), "--npy-dir", str(tmp_path / "n"), "--workers", "0"]) == 2
    assert "mine.csv: exists and depth-grid did not write it; pass --overwrite" in capsys.readouterr().err
    assert other.read_text() == "my own table\n" and not (tmp_path / "n").exists()
    assert main([*args[:-4], "--out", str(other), "--npy-dir", str(tmp_path / "n"), "--workers", "0",
                 "--overwrite"]) == 0
    assert [r[0] for r in read_submission(other)] == ids


def test_the_csv_never_replaces_an_experiment_record(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ck" / "checkpoint.pt")
    data, _ = _test_set(tmp_path / "kaggle", n=2)
    exp = tmp_path / "results" / "exp1"
    exp.mkdir(parents=True)
    (exp / "experiment.json").write_text("{}")
    (exp / "leaderboard.csv").write_text("trial_id\n")
    assert main(["--checkpoint", str(ckpt), "--data", str(data), "--out", str(exp / "leaderboard.csv"),
                 "--npy-dir", str(tmp_path / "n"), "--overwrite"]) == 2
    assert "leaderboard.csv: exists in an experiment folder" in capsys.readouterr().err
    assert (exp / "leaderboard.csv").read_text() == "trial_id\n"


@pytest.mark.usefixtures("mobilenet_weights")
def test_a_test_list_sharing_images_with_training_is_audited(tmp_path, capsys):
    """Two test images are copies of training images, two come from other scenes: the warning
    counts the two and names a real pair; --no-audit skips it."""
    import shutil

    from test_predict import make_experiment

    from grid.synth import generate

    ckpt = make_checkpoint(tmp_path / "ck" / "checkpoint.pt", image_size=(32, 48))
    exp = make_experiment(tmp_path / "e", [{"trial_id": "a", "arch": "unet", "si_rmse": 0.2, "status": "finished",
                                            "checkpoint": str(ckpt)}], n=6, size=(48, 64))
    data = tmp_path / "e" / "data"
    rooms = generate(tmp_path / "rooms", scenes=6, views=1, size=(48, 64), seed=1)
    for i, rgb in enumerate(sorted(rooms.glob("*_rgb.png"))):  # real-looking scenes, not noise
        shutil.copy(rgb, data / f"sample_{i:06d}_rgb.png")
    other = generate(tmp_path / "other", scenes=2, views=1, size=(48, 64), seed=99)
    test = tmp_path / "kaggle" / "test"
    test.mkdir(parents=True)
    sources = [data / "sample_000000_rgb.png", data / "sample_000002_rgb.png", *sorted(other.glob("*_rgb.png"))]
    for i, src in enumerate(sources):
        shutil.copy(src, test / f"t{i}_rgb.png")
    (tmp_path / "kaggle" / "test_list.txt").write_text("".join(f"t{i}_rgb.png\n" for i in range(4)))
    argv = ["--experiment", str(exp), "--data", str(tmp_path / "kaggle"), "--workers", "0", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "s1" / "sub.csv")]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning:")]
    assert line.startswith("warning: 2 of 4 test image(s) in ") and "among exp1's training images" in line
    assert "t0_rgb.png ~ sample_000000_rgb.png, 1.0000" in line or "t1_rgb.png ~ sample_000002_rgb.png, 1.0000" in line
    assert main([*argv, "--out", str(tmp_path / "s2" / "sub.csv"), "--no-audit"]) == 0
    assert "warning:" not in capsys.readouterr().out
