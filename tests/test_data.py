"""Dataset readers (both layouts), every bad-input case, and the dataset doctor ``grid.doctor``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_cil, write_pairs
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from grid import doctor, synth
from grid.cli import main as depth_grid
from trainables.data import (
    EIGEN_CROP,
    DataError,
    DatasetSpec,
    check_item,
    index_dataset,
    inspect_item,
    load_depth,
    load_pair,
    load_rgb,
)
from trainables.dataset import DepthDataset, collate, denormalize, normalize
from trainables.headers import check_headers

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    """Generated competition-layout data: 2 scenes x 2 views at 30x40."""
    return synth.generate(tmp_path_factory.mktemp("synth") / "d", scenes=2, views=2, size=(30, 40), seed=5)


def _item(folder: Path, fmt: str = "cil", i: int = 0, **kw):
    spec = DatasetSpec(folder, format=fmt, **kw)
    return index_dataset(spec, check_files=False)[i], spec


# ---- both layouts ----------------------------------------------------------------------------

def test_cil_layout_eval_and_train(synth_dir):
    spec = DatasetSpec.detect(synth_dir)
    assert spec.format == "cil"
    items = index_dataset(spec)
    assert [it.name for it in items] == [f"sample_{i:06d}_rgb.png" for i in range(4)]
    assert items[0].pred_name == "sample_000000_depth.npy"
    rgb, depth = load_pair(items[0], spec)
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(synth_dir / "sample_000000_rgb.png")))
    np.testing.assert_array_equal(depth, np.load(synth_dir / "sample_000000_depth.npy"))
    rgb_f, depth_f = load_pair(items[0], spec, flip=True)
    np.testing.assert_array_equal(rgb_f, rgb[:, ::-1])
    np.testing.assert_array_equal(depth_f, depth[:, ::-1])
    ev = DepthDataset(items, spec, size=(60, 80))[1]
    assert ev["image"].shape == (3, 60, 80) and ev["depth"].shape == (1, 30, 40)  # target stays native
    assert ev["name"] == items[1].name and ev["index"] == 1
    tr = DepthDataset(items, spec, size=(60, 80), train=True)[1]
    assert tr["depth"].shape == (1, 60, 80)
    batch = collate([DepthDataset(items, spec, size=(60, 80))[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 60, 80) and batch["depth"].shape == (3, 1, 30, 40)


def test_train_flip_is_paired(synth_dir):
    spec = DatasetSpec(synth_dir)
    items = index_dataset(spec)
    ev = DepthDataset(items, spec, size=None)[0]
    tr = DepthDataset(items, spec, size=None, train=True)
    outcomes = set()
    for seed in range(12):
        torch.manual_seed(seed)
        s = tr[0]
        flipped = torch.equal(s["image"], ev["image"].flip(-1))
        assert flipped or torch.equal(s["image"], ev["image"])
        assert torch.equal(s["depth"], ev["depth"].flip(-1) if flipped else ev["depth"])  # same flip
        outcomes.add(flipped)
    assert outcomes == {True, False}


def test_normalize_matches_imagenet_definition():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = normalize(rgb)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((rgb / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(normalize(rgb, flip=True).numpy(), expected[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(normalize(rgb[:, ::-1]).numpy(), expected[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(normalize(rgb[:, ::-1], flip=True).numpy(), expected, atol=1e-5)
    crop = expected[:, 1:4, 2:6]  # a cropped view takes another path (mirrored copy)
    np.testing.assert_allclose(normalize(rgb[1:4, 2:6][:, ::-1]).numpy(), crop[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(normalize(rgb[1:4, 2:6], flip=True).numpy(), crop[:, :, ::-1], atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))))
def test_denormalize_inverts_normalize(rgb):
    np.testing.assert_allclose(denormalize(normalize(rgb)).numpy(), rgb.transpose(2, 0, 1) / 255.0, atol=1e-5)


def test_pairs_layout_scale_invalid_zero_and_eigen_crop(tmp_path):
    root = write_pairs(tmp_path / "p", n=2, size=(480, 640), scale=1000.0)
    spec = DatasetSpec.detect(root, depth_scale=1000.0, crop="eigen")
    assert spec.format == "pairs" and spec.crop == EIGEN_CROP
    items = index_dataset(spec)
    raw = np.asarray(Image.open(root / "depth/0001.png")).astype(np.float64)
    depth = load_depth(items[1], spec)
    assert depth.shape == (426, 560)
    np.testing.assert_allclose(depth, raw[45:471, 41:601] / 1000.0, rtol=1e-6)
    rgb = load_rgb(items[1], spec)
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(root / "rgb/0001.png"))[45:471, 41:601])
    rgb_f, depth_f = load_pair(items[1], spec, flip=True)  # mirrored after the crop, in one pass
    np.testing.assert_array_equal(rgb_f, rgb[:, ::-1])
    np.testing.assert_array_equal(depth_f, depth[:, ::-1])
    full = load_depth(items[1], DatasetSpec(root, format="pairs", depth_scale=1000.0))
    assert full[0, 0] == 0.0  # the stored 0 stays invalid
    sample = DepthDataset(items, spec)[0]
    assert sample["image"].shape == (3, 426, 560) and sample["depth"].shape == (1, 426, 560)


def test_jpeg_and_grey_images_read_as_rgb(tmp_path):
    yy, xx = np.mgrid[0:24, 0:32]
    rgb = np.stack([yy * 10, xx * 8, (yy + xx) * 4], -1).astype(np.uint8)  # smooth: JPEG keeps it
    (tmp_path / "rgb").mkdir()
    Image.fromarray(rgb).save(tmp_path / "rgb/a.jpg", quality=95)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "rgb/b.png")
    Image.fromarray(np.full((24, 32), 2000, np.uint16)).save(tmp_path / "d.png")
    (tmp_path / "pairs.txt").write_text("rgb/a.jpg d.png\nrgb/b.png rgb/../d2.png\n")
    Image.fromarray(np.full((24, 32), 2000, np.uint16)).save(tmp_path / "d2.png")
    spec = DatasetSpec(tmp_path, format="pairs", depth_scale=1000)
    a, b = index_dataset(spec)
    jpeg = load_rgb(a, spec).astype(int)
    assert np.abs(jpeg - rgb).mean() < 3  # lossy: close, not exact
    assert np.abs(jpeg - np.asarray(Image.open(tmp_path / "rgb/a.jpg"))).max() <= 2  # as PIL decodes it
    grey = load_rgb(b, spec)
    assert grey.shape == (24, 32, 3) and (grey == rgb[..., :1]).all()
    assert load_depth(b, spec).max() == pytest.approx(2.0)


def test_test_list_without_depth(tmp_path):
    root = write_cil(tmp_path / "t", n=2, list_name="test_list.txt")
    (root / "sample_000001_depth.npy").unlink()
    (root / "test_list.txt").write_text("sample_000000_rgb.png\nsample_000001_rgb.png\n")
    spec = DatasetSpec(root, list_file="test_list.txt")
    with pytest.raises(DataError, match="expected 'rgb depth'"):
        index_dataset(spec)
    items = index_dataset(spec, require_depth=False)
    assert [it.pred_name for it in items] == ["sample_000000_depth.npy", "sample_000001_depth.npy"]
    sample = DepthDataset(items, spec, size=(16, 16), with_depth=False)[1]
    assert "depth" not in sample and sample["image"].shape == (3, 16, 16)


def test_detect_format(tmp_path, cil_dir, pairs_dir):
    assert DatasetSpec.detect(pairs_dir).format == "pairs"
    (cil_dir / "mine.txt").write_text((cil_dir / "train_list.txt").read_text())
    (cil_dir / "train_list.txt").rename(cil_dir / "other.txt")
    assert DatasetSpec.detect(cil_dir, list_file="mine.txt").format == "cil"  # from the entries
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        DatasetSpec.detect(cil_dir)
    with pytest.raises(DataError, match="does not exist"):
        DatasetSpec.detect(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"absent\.txt: list file not found"):
        DatasetSpec.detect(cil_dir, list_file="absent.txt")
    with pytest.raises(DataError, match="depth_scale"):
        DatasetSpec(pairs_dir, format="pairs", depth_scale=0)
    with pytest.raises(DataError, match="crop"):
        DatasetSpec(pairs_dir, crop="middle")


# ---- bad input: each gives a DataError naming the file and the problem -----------------------

def _list(root: Path, text: str, name: str = "train_list.txt", fmt: str = "cil") -> DatasetSpec:
    (root / name).write_text(text)
    return DatasetSpec(root, format=fmt, list_file=name)


def test_missing_files_named(cil_dir):
    (cil_dir / "sample_000002_rgb.png").unlink()
    (cil_dir / "sample_000003_depth.npy").unlink()
    with pytest.raises(DataError) as e:
        index_dataset(DatasetSpec(cil_dir))
    assert "sample_000002_rgb.png not found" in str(e.value) and "sample_000003_depth.npy not found" in str(e.value)
    items = index_dataset(DatasetSpec(cil_dir), check_files=False)
    assert "image file not found" in check_item(items[2], DatasetSpec(cil_dir))[0]
    assert "depth file not found" in check_item(items[3], DatasetSpec(cil_dir))[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_corrupt_image(tmp_path, damage, suffix):
    root = write_pairs(tmp_path / "p", n=1)
    good = tmp_path / "p" / "rgb/0000.png"
    target = good.with_suffix(suffix)
    Image.open(good).save(target)
    blob = target.read_bytes()
    target.write_bytes({"garbage": b"not an image at all" * 50, "truncated": blob[: len(blob) // 2], "empty": b""}[damage])
    spec = _list(root, f"rgb/0000{suffix} depth/0000.png\n", "pairs.txt", "pairs")
    with pytest.raises(DataError, match=rf"0000\{suffix}: unreadable or corrupt image"):
        load_rgb(index_dataset(spec)[0], spec)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "object", "npz", "3d", "empty"])
def test_corrupt_npy(cil_dir, damage):
    path = cil_dir / "sample_000001_depth.npy"
    if damage == "garbage":
        path.write_bytes(b"\x93NUMPY nonsense")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "object":
        np.save(path, np.array([{"a": 1}], dtype=object))
    elif damage == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, depth=np.ones((24, 32)))
    elif damage == "3d":
        np.save(path, np.ones((2, 24, 32), np.float32))
    else:
        np.save(path, np.ones((0, 32), np.float32))
    item, spec = _item(cil_dir, i=1)
    with pytest.raises(DataError, match=r"sample_000001_depth\.npy: (corrupt|not a \.npy|depth must be)"):
        load_depth(item, spec)
    assert inspect_item(item, spec).problems  # the doctor reports it instead of crashing


def test_size_mismatch(cil_dir, tmp_path):
    np.save(cil_dir / "sample_000000_depth.npy", np.ones((20, 32), np.float32))
    item, spec = _item(cil_dir)
    with pytest.raises(DataError, match=r"sample_000000_depth\.npy: depth is 20x32 but sample_000000_rgb\.png is 24x32"):
        load_pair(item, spec)
    # sizes that differ but both fit the crop must not pass silently as aligned crops
    root = write_pairs(tmp_path / "p", n=1, size=(480, 640))
    Image.fromarray(np.ones((500, 700), np.uint16)).save(root / "depth/0000.png")
    item, spec = _item(root, "pairs", crop="eigen")
    with pytest.raises(DataError, match="depth is 500x700 but 0000.png is 480x640"):
        load_pair(item, spec)
    with pytest.raises(DataError, match="crop .* does not fit an image of 24x32"):
        load_rgb(*_item(cil_dir, crop="eigen"))


@pytest.mark.parametrize("entry", ["../outside_rgb.png", "sub/../../outside_rgb.png", "/etc/passwd"])
def test_entries_escaping_root(cil_dir, entry):
    (cil_dir.parent / "outside_rgb.png").write_bytes((cil_dir / "sample_000000_rgb.png").read_bytes())
    spec = _list(cil_dir, f"sample_000000_rgb.png sample_000000_depth.npy\n{entry} sample_000001_depth.npy\n")
    with pytest.raises(DataError, match=r"train_list\.txt:2: .*(escapes the dataset folder|absolute path)"):
        index_dataset(spec)


def test_symlinked_files_inside_root_are_allowed(cil_dir, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (cil_dir / "sample_000000_rgb.png").rename(store / "a.png")
    (cil_dir / "sample_000000_rgb.png").symlink_to(store / "a.png")
    items = index_dataset(DatasetSpec(cil_dir))
    assert load_rgb(items[0], DatasetSpec(cil_dir)).shape == (24, 32, 3)


@pytest.mark.parametrize("text", ["", "\n   \n", "# only a comment\n"])
def test_empty_list(cil_dir, text):
    with pytest.raises(DataError, match=r"train_list\.txt: list file is empty"):
        index_dataset(_list(cil_dir, text))


@pytest.mark.parametrize("second", ["sample_000000_rgb.png sample_000001_depth.npy",
                                    "./sample_000001_rgb.png sample_000000_depth.npy"])
def test_duplicate_entries(cil_dir, second):
    spec = _list(cil_dir, f"sample_000000_rgb.png sample_000000_depth.npy\nsample_000001_rgb.png sample_000001_depth.npy\n{second}\n")
    with pytest.raises(DataError, match=r"train_list\.txt:3: duplicate entry .* \(first on line [12]\)"):
        index_dataset(spec)


def test_malformed_line(cil_dir):
    with pytest.raises(DataError, match=r"train_list\.txt:1: expected 'rgb depth'"):
        index_dataset(_list(cil_dir, "a_rgb.png a_depth.npy extra\n"))


def test_nan_inf_negative_depth_masked_and_no_valid_pixel_reported(cil_dir):
    depth = np.linspace(0.5, 4.0, 24 * 32, dtype=np.float32).reshape(24, 32)
    depth[0, :4] = [np.nan, np.inf, -np.inf, -2.0]
    np.save(cil_dir / "sample_000000_depth.npy", depth)
    item, spec = _item(cil_dir)
    loaded = load_depth(item, spec)
    assert np.isfinite(loaded).all() and (loaded[0, :4] == 0).all()
    np.testing.assert_array_equal(loaded[1:], depth[1:])
    report = inspect_item(item, spec)
    assert not report.problems and report.valid_share == pytest.approx(1 - 4 / (24 * 32))
    sample = DepthDataset([item], spec, size=(24, 32), train=True)[0]
    assert torch.isfinite(sample["depth"]).all()
    np.save(cil_dir / "sample_000001_depth.npy", np.full((24, 32), np.nan, np.float32))
    assert check_item(*_item(cil_dir, i=1)) == [f"{cil_dir / 'sample_000001_depth.npy'}: no valid depth pixel"]


def test_rgb_depth_png_rejected(pairs_dir):
    Image.open(pairs_dir / "rgb/0000.png").save(pairs_dir / "depth/0000.png")
    with pytest.raises(DataError, match="depth PNG must be single-channel"):
        load_depth(*_item(pairs_dir, "pairs"))


# ---- the dataset doctor ------------------------------------------------------------------------

def test_doctor_good_dataset(synth_dir, capsys):
    assert depth_grid(["check", "--data", str(synth_dir)]) == 0
    out = capsys.readouterr().out
    assert "4 listed, 4 ok, 0 bad" in out and "30x40: 4" in out and "bad items" not in out
    lo, hi = (float(v) for v in out.split("depth   : ")[1].split(" m")[0].split(" .. "))
    depths = np.concatenate([np.load(p).ravel() for p in synth_dir.glob("*_depth.npy")])
    assert lo == pytest.approx(depths.min(), abs=1e-3) and hi == pytest.approx(depths.max(), abs=1e-3)


def test_doctor_lists_every_bad_item(cil_dir, capsys):
    (cil_dir / "sample_000000_rgb.png").write_bytes(b"junk")
    (cil_dir / "sample_000001_depth.npy").unlink()
    np.save(cil_dir / "sample_000002_depth.npy", np.zeros((24, 32), np.float32))
    np.save(cil_dir / "sample_000003_depth.npy", np.ones((10, 10), np.float32))
    assert depth_grid(["check", "--data", str(cil_dir), "--format", "cil", "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert "4 listed, 0 ok, 4 bad" in out
    for name, reason in [(0, "unreadable or corrupt image"), (1, "depth file not found"),
                         (2, "no valid depth pixel"), (3, "depth is 10x10 but")]:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"  sample_{name:06d}_rgb.png:"))
        assert reason in line


def test_doctor_scale_hint_and_crop(tmp_path, capsys):
    root = write_pairs(tmp_path / "p", n=2, size=(480, 640), scale=1000.0)
    assert depth_grid(["check", "--data", str(root), "--crop", "eigen"]) == 0
    out = capsys.readouterr().out
    assert "426x560: 2" in out and "is --depth-scale right?" in out
    assert depth_grid(["check", "--data", str(root), "--depth-scale", "1000", "--crop", "0,100,0,200"]) == 0
    out = capsys.readouterr().out
    assert "100x200: 2" in out and "--depth-scale right" not in out


def test_doctor_test_list(tmp_path, capsys):
    root = write_cil(tmp_path / "t", n=2)
    (root / "test_list.txt").write_text("sample_000000_rgb.png\nsample_000001_rgb.png\n")
    for p in root.glob("*_depth.npy"):
        p.unlink()
    assert depth_grid(["check", "--data", str(root), "--list", "test_list.txt", "--test"]) == 0
    assert "2 listed, 2 ok" in capsys.readouterr().out


def test_doctor_bad_folder_or_list_exit_2(tmp_path, cil_dir, capsys):
    assert depth_grid(["check", "--data", str(tmp_path / "nope")]) == 2
    assert "dataset folder does not exist" in capsys.readouterr().err
    (cil_dir / "train_list.txt").write_text("../x_rgb.png x_depth.npy\n")
    assert depth_grid(["check", "--data", str(cil_dir)]) == 2
    assert "escapes the dataset folder" in capsys.readouterr().err
    (cil_dir / "train_list.txt").write_text("")
    assert depth_grid(["check", "--data", str(cil_dir), "--format", "cil"]) == 2
    assert "list file is empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        depth_grid(["check", "--data", str(cil_dir), "--crop", "top"])
    assert e.value.code == 2


def test_doctor_module_entry_point(synth_dir, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "grid.cli", "check", "--data", str(synth_dir)],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "4 ok" in ok.stdout


# ---- real data ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_nyu_labeled_train(nyu_dir):
    spec = DatasetSpec.detect(nyu_dir, depth_scale=25.5, crop="eigen")
    assert spec.format == "pairs"
    report = doctor.check_dataset(spec, progress=False)  # reads every item
    assert len(report.items) == 795 and not report.bad
    assert all(r.shape == (426, 560) for r in report.items)
    lo, hi = min(r.depth_min for r in report.items), max(r.depth_max for r in report.items)
    assert 0.7 <= lo < 1.0 and 9.0 < hi <= 10.0
    sample = DepthDataset(index_dataset(spec)[:1], spec, train=True)[0]
    assert sample["image"].shape == (3, 426, 560) and sample["depth"].shape == (1, 426, 560)


# ---- the run's fast check: headers only (trainables.headers.check_headers) ----------------------

def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


DAMAGE = {  # what a user's dataset can hold -> the words the fast check uses for it
    "wrong shape": (lambda d: np.save(d / "sample_000002_depth.npy", np.ones((10, 12), np.float32)),
                    "sample_000002_depth.npy: depth is 10x12 but sample_000002_rgb.png is 24x32"),
    "truncated npy": (lambda d: _cut(d / "sample_000002_depth.npy", 300), "sample_000002_depth.npy: truncated .npy"),
    "not an npy": (lambda d: (d / "sample_000002_depth.npy").write_text("depth"), "not a readable .npy file"),
    "objects": (lambda d: np.save(d / "sample_000002_depth.npy", np.array([None, 1]), allow_pickle=True),
                "holds Python objects"),
    "3-D depth": (lambda d: np.save(d / "sample_000002_depth.npy", np.ones((24, 32, 3), np.float32)),
                  "2-D real numeric array"),
    "all NaN": (lambda d: np.save(d / "sample_000002_depth.npy", np.full((24, 32), np.nan, np.float32)),
                "sample_000002_depth.npy: no valid depth pixel"),
    "all zero and negative": (lambda d: np.save(d / "sample_000002_depth.npy", -np.ones((24, 32), np.float32)),
                              "no valid depth pixel"),
    "truncated rgb": (lambda d: _cut(d / "sample_000002_rgb.png", 200), "sample_000002_rgb.png: truncated image PNG"),
    "rgb not an image": (lambda d: (d / "sample_000002_rgb.png").write_text("x"), "unreadable or corrupt image"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_check_headers_names_the_bad_item_and_the_doctor_agrees(cil_dir: Path, damage: str) -> None:
    spec = DatasetSpec(cil_dir)
    items = index_dataset(spec)
    check_headers(items, spec)  # healthy
    make, words = DAMAGE[damage]
    make(cil_dir)
    with pytest.raises(DataError) as e:
        check_headers(items, spec)
    assert words in str(e.value) and str(e.value).startswith("1 of 4 item(s) cannot be trained on")
    assert f"depth-grid check --data {cil_dir}" in str(e.value) and "\n" not in str(e.value)
    assert check_item(items[2], spec)  # never refused by the fast check and accepted by a full read


def test_check_headers_accepts_what_training_reads(cil_dir: Path, pairs_dir: Path) -> None:
    np.save(cil_dir / "sample_000001_depth.npy", np.ones((1, 24, 32), np.float64))  # (1, H, W) squeezes
    depth = np.full((24, 32), np.nan, np.float32)
    depth[20, 30] = 2.0  # one valid pixel, off the sparse sample's grid
    np.save(cil_dir / "sample_000002_depth.npy", depth)
    np.save(cil_dir / "sample_000003_depth.npy", np.asfortranarray(np.ones((24, 32), np.uint16)))
    for folder, fmt in ((cil_dir, "cil"), (pairs_dir, "pairs")):
        spec = DatasetSpec(folder, format=fmt)
        items = index_dataset(spec)
        check_headers(items, spec)
        assert all(not check_item(it, spec) for it in items)


def test_check_headers_pairs_and_crop(pairs_dir: Path) -> None:
    spec = DatasetSpec(pairs_dir, format="pairs", crop=(0, 20, 0, 40))  # wider than 32 columns
    with pytest.raises(DataError, match=r"4 of 4 item\(s\).*crop \(0, 20, 0, 40\) does not fit an image of 24x32"):
        check_headers(index_dataset(spec), spec)
    Image.open(pairs_dir / "rgb/0001.png").save(pairs_dir / "depth/0001.png")  # a colour image as depth
    _cut(pairs_dir / "depth/0003.png", 100)
    spec = DatasetSpec(pairs_dir, format="pairs")
    with pytest.raises(DataError) as e:
        check_headers(index_dataset(spec), spec)
    assert "2 of 4" in str(e.value) and "depth/0001.png: depth PNG must be single-channel" in str(e.value)
    assert "depth/0003.png: truncated depth PNG" in str(e.value)


def test_check_headers_of_many_items_is_fast(tmp_path: Path) -> None:
    import time

    root = synth.generate(tmp_path / "d", scenes=10, views=10, size=(120, 160), seed=1)
    spec = DatasetSpec(root)
    items = index_dataset(spec)
    t0 = time.perf_counter()
    check_headers(items, spec)
    assert time.perf_counter() - t0 < 1.0  # 100 items: a few ms each at most


def test_a_file_given_for_the_folder_and_a_list_with_commas_say_so(cil_dir: Path, capsys) -> None:
    with pytest.raises(DataError, match=r"train_list\.txt: is a file; --data takes the dataset folder"):
        DatasetSpec.detect(cil_dir / "train_list.txt")
    (cil_dir / "test_list.txt").write_text("sample_000000_rgb.png,sample_000000_depth.npy\n")
    for require_depth in (True, False):
        with pytest.raises(DataError, match=r"test_list\.txt:1: entries are separated by ','; a list file "
                                            r"separates them with spaces"):
            index_dataset(DatasetSpec(cil_dir, list_file="test_list.txt"), require_depth=require_depth)
    (cil_dir / "x;y_rgb.png").write_bytes((cil_dir / "sample_000000_rgb.png").read_bytes())
    (cil_dir / "test_list.txt").write_text("x;y_rgb.png\n")  # a file named so exists: an entry, not two
    assert [it.name for it in index_dataset(DatasetSpec(cil_dir, list_file="test_list.txt"),
                                            require_depth=False)] == ["x;y_rgb.png"]
    assert depth_grid(["check", "--data", str(cil_dir / "train_list.txt")]) == 2
    assert "is a file" in capsys.readouterr().err
