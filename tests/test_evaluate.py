"""``python -m grid.evaluate`` end to end on generated datasets, including every error case."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_cil, write_pairs
from PIL import Image

from grid.cli import command
from grid.inference.evaluate import evaluate
from trainables.data import DataError, DatasetSpec, index_dataset, load_depth
from trainables.metrics import METRICS, MetricAccumulator, si_rmse

main = command("evaluate")


def write_preds(pred_dir: Path, data: Path, fn, **spec_kw) -> list[np.ndarray]:
    """Write ``fn(ground truth in metres, index)`` for every item; return the targets."""
    spec = DatasetSpec.detect(data, **spec_kw)
    targets = []
    for i, item in enumerate(index_dataset(spec)):
        gt = load_depth(item, spec)
        out = pred_dir / item.pred_name
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, fn(gt, i).astype(np.float32))
        targets.append(gt)
    return targets


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_scaled_ground_truth_scores_zero(tmp_path: Path, cil_dir: Path, capsys) -> None:
    preds = tmp_path / "preds"
    write_preds(preds, cil_dir, lambda gt, i: 3.0 * gt)
    out_json = tmp_path / "out" / "metrics.json"
    code, out, err = run(capsys, "--pred", preds, "--data", cil_dir, "--json", out_json)
    assert code == 0, err
    for name in METRICS:
        assert name in out
    assert "images" in out and " 4" in out
    result = json.loads(out_json.read_text())
    assert result["count"] == 4 and result["skipped"] == 0
    assert result["si_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert result["abs_rel"] == pytest.approx(2.0, rel=1e-6)  # |3y - y| / y
    assert result["rmse_log"] == pytest.approx(math.log(3.0), rel=1e-6)
    assert result["delta1"] == 0.0 and result["delta3"] == 0.0  # 3 > 1.25^3
    assert [p.name for p in out_json.parent.iterdir()] == ["metrics.json"]  # no temp file left


def test_perturbed_predictions_score_above_zero(tmp_path: Path, cil_dir: Path) -> None:
    rng = np.random.default_rng(0)
    preds = tmp_path / "preds"
    targets = write_preds(preds, cil_dir, lambda gt, i: gt * rng.uniform(0.8, 1.25, gt.shape))
    result = evaluate(preds, DatasetSpec.detect(cil_dir))
    assert result["si_rmse"] > 0.01
    stored = [np.load(preds / f"sample_{i:06d}_depth.npy") for i in range(4)]
    assert result["si_rmse"] == pytest.approx(si_rmse(stored, targets), rel=1e-9)


def test_pairs_layout_with_invalid_pixels(tmp_path: Path, capsys) -> None:
    data = write_pairs(tmp_path / "pairs", n=3, scale=1000.0)
    preds = tmp_path / "preds"
    targets = write_preds(preds, data, lambda gt, i: 0.5 * gt, format="pairs", depth_scale=1000.0)
    assert all(t[0, 0] == 0.0 for t in targets)  # prediction 0 there, masked out
    code, out, err = run(capsys, "--pred", preds, "--data", data, "--format", "pairs",
                         "--depth-scale", "1000")
    assert code == 0, err
    assert (preds / "depth" / "0000.npy").is_file()
    result = evaluate(preds, DatasetSpec.detect(data, depth_scale=1000.0))
    assert result["si_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert result["abs_rel"] == pytest.approx(0.5, rel=1e-6)


def test_list_option_evaluates_a_subset(tmp_path: Path, cil_dir: Path) -> None:
    (cil_dir / "val.txt").write_text("sample_000001_rgb.png sample_000001_depth.npy\n")
    preds = tmp_path / "preds"
    preds.mkdir()
    np.save(preds / "sample_000001_depth.npy", 2 * np.load(cil_dir / "sample_000001_depth.npy"))
    result = evaluate(preds, DatasetSpec.detect(cil_dir, list_file="val.txt"))
    assert result["count"] == 1 and result["si_rmse"] == pytest.approx(0.0, abs=1e-6)


def test_missing_and_extra_predictions_are_all_named(tmp_path: Path, cil_dir: Path, capsys) -> None:
    preds = tmp_path / "preds"
    write_preds(preds, cil_dir, lambda gt, i: gt)
    (preds / "sample_000001_depth.npy").unlink()
    (preds / "sample_000003_depth.npy").unlink()
    np.save(preds / "stray.npy", np.ones((2, 2)))
    (preds / "sub").mkdir()
    np.save(preds / "sub" / "other.npy", np.ones((2, 2)))
    code, out, err = run(capsys, "--pred", preds, "--data", cil_dir)
    assert code == 1 and out == ""
    assert "4 problem(s)" in err
    assert "sample_000001_rgb.png: prediction" in err and "sample_000003_rgb.png: prediction" in err
    assert "stray.npy: extra prediction" in err and "sub/other.npy: extra prediction" in err


def test_corrupt_wrong_shape_and_nan_predictions_listed_together(tmp_path: Path, cil_dir: Path,
                                                                capsys) -> None:
    preds = tmp_path / "preds"
    write_preds(preds, cil_dir, lambda gt, i: gt)
    (preds / "sample_000000_depth.npy").write_bytes(b"not a numpy file")
    np.save(preds / "sample_000001_depth.npy", np.ones((12, 16), np.float32))
    bad = np.ones((24, 32), np.float32)
    bad[3, 3] = np.nan
    np.save(preds / "sample_000002_depth.npy", bad)
    np.save(preds / "sample_000003_depth.npy", np.ones((2, 24, 32), np.float32))
    code, _, err = run(capsys, "--pred", preds, "--data", cil_dir)
    np.save(preds / "sample_000003_depth.npy", np.ones((24, 32), np.complex64))
    assert "sample_000003_depth.npy: prediction must be a 2-D array of real numbers, got complex64" in run(
        capsys, "--pred", preds, "--data", cil_dir)[2]
    assert code == 1
    assert "sample_000000_depth.npy: corrupt or unreadable .npy" in err
    assert "sample_000001_depth.npy: prediction is 12x16 but the target of sample_000001_rgb.png is 24x32" in err
    assert "--resize" in err
    assert "sample_000002_depth.npy: prediction has 1 non-finite values" in err
    assert "sample_000003_depth.npy: prediction must be a 2-D array of real numbers" in err


def test_resize_opt_in(tmp_path: Path, cil_dir: Path) -> None:
    preds = tmp_path / "preds"
    targets = write_preds(preds, cil_dir, lambda gt, i: gt)
    # A quarter-size map that differs from pixel to pixel: a constant one would resize to the
    # same constant under any method, so it could not tell bilinear from nearest or a fill.
    small = np.random.default_rng(3).uniform(1.0, 4.0, (6, 8)).astype(np.float32)
    np.save(preds / "sample_000001_depth.npy", small)
    spec = DatasetSpec.detect(cil_dir)
    with pytest.raises(DataError, match="sample_000001_depth.npy: prediction is 6x8"):
        evaluate(preds, spec)
    result = evaluate(preds, spec, resize=True)
    # Reference bilinear resize from PIL, not torch: half-pixel centres, edges repeated.
    upsampled = np.asarray(Image.fromarray(small, mode="F").resize((32, 24), Image.Resampling.BILINEAR))
    expected = MetricAccumulator()
    for i, target in enumerate(targets):
        expected.update(upsampled if i == 1 else target, target)
    assert result["si_rmse"] > 0.05  # a real error on one of four images
    for name, value in expected.result().items():
        assert result[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_prediction_with_trailing_channel_is_accepted(tmp_path: Path, cil_dir: Path) -> None:
    preds = tmp_path / "preds"
    write_preds(preds, cil_dir, lambda gt, i: gt[..., None] if i % 2 else gt[None])
    assert evaluate(preds, DatasetSpec.detect(cil_dir))["si_rmse"] == pytest.approx(0.0, abs=1e-6)


def test_eigen_crop_accepts_cropped_or_full_frame_predictions(tmp_path: Path) -> None:
    data = write_cil(tmp_path / "nyu_like", n=2, size=(480, 640))
    preds = tmp_path / "preds"
    full = write_preds(preds, data, lambda gt, i: gt * 2)  # full 480x640 frames
    # Spoil rows outside the crop: only the cropped region may be scored.
    for i in range(2):
        p = preds / f"sample_{i:06d}_depth.npy"
        arr = np.load(p)
        arr[:45] = 1e3
        np.save(p, arr)
    spec = DatasetSpec.detect(data, crop="eigen")
    result = evaluate(preds, spec)
    assert result["count"] == 2 and result["si_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert evaluate(preds, DatasetSpec.detect(data))["si_rmse"] > 0.1  # uncropped sees the border
    np.save(preds / "sample_000000_depth.npy", 2 * full[0][45:471, 41:601])  # already cropped
    assert evaluate(preds, spec)["si_rmse"] == pytest.approx(0.0, abs=1e-6)
    np.save(preds / "sample_000001_depth.npy", np.ones((100, 100), np.float32))
    with pytest.raises(DataError, match="prediction is 100x100 but the target .* is 426x560"):
        evaluate(preds, spec)


def test_no_valid_ground_truth_is_an_error(tmp_path: Path, cil_dir: Path) -> None:
    preds = tmp_path / "preds"
    write_preds(preds, cil_dir, lambda gt, i: gt)
    for i in range(4):
        np.save(cil_dir / f"sample_{i:06d}_depth.npy", np.zeros((24, 32), np.float32))
    with pytest.raises(DataError, match="no item has a valid ground-truth pixel"):
        evaluate(preds, DatasetSpec.detect(cil_dir))


def test_item_without_valid_ground_truth_is_skipped(tmp_path: Path, cil_dir: Path, capsys) -> None:
    preds = tmp_path / "preds"
    write_preds(preds, cil_dir, lambda gt, i: gt * 1.5)
    np.save(cil_dir / "sample_000002_depth.npy", np.full((24, 32), np.nan, np.float32))
    code, out, _ = run(capsys, "--pred", preds, "--data", cil_dir)
    assert code == 0
    assert "skipped" in out
    result = evaluate(preds, DatasetSpec.detect(cil_dir))
    assert result["count"] == 3 and result["skipped"] == 1
    assert result["abs_rel"] == pytest.approx(0.5, rel=1e-6)


def test_bad_folders_and_arguments(tmp_path: Path, cil_dir: Path, capsys) -> None:
    code, _, err = run(capsys, "--pred", tmp_path / "nope", "--data", cil_dir)
    assert code == 2 and "nope: prediction folder does not exist" in err
    code, _, err = run(capsys, "--pred", tmp_path, "--data", tmp_path / "missing")
    assert code == 2 and "dataset folder does not exist" in err
    code, _, err = run(capsys, "--pred", tmp_path, "--data", cil_dir, "--list", "absent.txt")
    assert code == 2 and "absent.txt: list file not found" in err
    with pytest.raises(SystemExit) as exc:
        main(["--data", str(cil_dir)])  # --pred is required
    assert exc.value.code == 2


def test_module_entry_point(tmp_path: Path, cil_dir: Path) -> None:
    preds = tmp_path / "preds"
    write_preds(preds, cil_dir, lambda gt, i: gt)
    (preds / "sample_000000_depth.npy").unlink()  # the exit status must reach the shell
    proc = subprocess.run([sys.executable, "-m", "grid.cli", "evaluate", "--pred", str(preds), "--data", str(cil_dir)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "sample_000000_rgb.png" in proc.stderr


@pytest.mark.slow
def test_real_nyu_subset_with_eigen_crop(tmp_path: Path, nyu_dir: Path) -> None:
    lines = (nyu_dir / "pairs.txt").read_text().splitlines()[:5]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    spec = DatasetSpec(root=nyu_dir, format="pairs", list_file=str(tmp_path / "list.txt"),
                       data_dir=nyu_dir, depth_scale=25.5, crop="eigen")
    full = DatasetSpec(root=nyu_dir, format="pairs", list_file=str(tmp_path / "list.txt"),
                       data_dir=nyu_dir, depth_scale=25.5)
    top, bottom, left, right = 45, 471, 41, 601  # the Eigen crop, written out here
    inside = np.zeros((480, 640), bool)
    inside[top:bottom, left:right] = True
    rng = np.random.default_rng(0)
    preds = tmp_path / "preds"
    expected = MetricAccumulator()
    for item in index_dataset(spec):
        gt = load_depth(item, full)  # (480, 640) metres
        assert gt.shape == inside.shape
        # An error that differs from pixel to pixel (a pure scale error scores alike on any
        # region) and a wild border outside the crop (any of it let in scores far worse).
        pred = (gt * rng.uniform(0.8, 1.25, gt.shape)).astype(np.float32)
        pred[~inside] = rng.uniform(20.0, 50.0, int((~inside).sum()))
        out = preds / item.pred_name
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, pred)  # full 480x640 frames
        expected.update(pred[top:bottom, left:right], gt[top:bottom, left:right])
    result = evaluate(preds, spec)
    assert result["count"] == 5
    for name, value in expected.result().items():
        assert result[name] == pytest.approx(value, rel=1e-6), name
    assert 0.05 < result["si_rmse"] < 0.5 and 0.05 < result["abs_rel"] < 0.2
    assert evaluate(preds, full)["abs_rel"] > 1.0  # uncropped, the border counts


def test_json_never_replaces_an_input_and_a_foreign_file_needs_overwrite(tmp_path: Path, cil_dir: Path,
                                                                         capsys) -> None:
    preds = tmp_path / "preds"
    write_preds(preds, cil_dir, lambda gt, i: gt)
    gt = cil_dir / "sample_000001_depth.npy"
    before = gt.read_bytes()
    for target, what in ((gt, "a dataset file"), (cil_dir / "train_list.txt", "the list file"),
                         (preds / "sample_000002_depth.npy", "a prediction")):
        code, _, err = run(capsys, "--pred", preds, "--data", cil_dir, "--json", target, "--overwrite")
        assert code == 2 and f"{target.name}: --json would replace {what}" in err, err
    assert gt.read_bytes() == before
    out = tmp_path / "m.json"
    assert run(capsys, "--pred", preds, "--data", cil_dir, "--json", out)[0] == 0
    assert run(capsys, "--pred", preds, "--data", cil_dir, "--json", out)[0] == 0  # its own: replaced
    assert json.loads(out.read_text())["written_by"] == "depth-grid evaluate"
    out.write_text('{"mine": 1}')
    code, _, err = run(capsys, "--pred", preds, "--data", cil_dir, "--json", out)
    assert code == 2 and "m.json: exists and depth-grid did not write it; pass --overwrite" in err
    assert json.loads(out.read_text()) == {"mine": 1}
    assert run(capsys, "--pred", preds, "--data", cil_dir, "--json", out, "--overwrite")[0] == 0
    assert json.loads(out.read_text())["count"] == 4
