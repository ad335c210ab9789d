"""The built-in synthetic scenes: geometry, determinism, layout, caching, CLI."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grid import synth
from grid.cli import main as depth_grid
from trainables.data import DatasetSpec, index_dataset
from trainables.dataset import DepthDataset

SIZE = (48, 64)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _load(folder: Path, i: int) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(Image.open(folder / f"sample_{i:06d}_rgb.png"))
    return rgb, np.load(folder / f"sample_{i:06d}_depth.npy")


@pytest.fixture(scope="module")
def jitter_dir(tmp_path_factory) -> Path:
    return synth.generate(tmp_path_factory.mktemp("jitter") / "d", scenes=3, views=3, size=SIZE, seed=7)


def _empty_scene(room=(4.0, 2.5, 6.0), objects=()) -> synth.Scene:
    base = synth.make_scene(0, 0)
    return synth.Scene(np.array(room, np.float32), tuple(objects), base.room_mats, (), base.light, base.fill,
                       base.noise, 1.0, ())


def test_depth_is_z_distance_to_a_facing_wall():
    # Camera 1.5 m into a 6 m deep room, looking straight down +z: every pixel that sees the far
    # wall is 4.5 m away along the optical axis, whatever its angle (z-depth, not ray length).
    scene = _empty_scene()
    cam = synth.Camera.make(np.array([2.0, 1.25, 1.5]), yaw=0.0, pitch=0.0, roll=0.0, size=(60, 80))
    rgb, depth = synth.render(scene, cam, np.random.default_rng(0))
    assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    centre = depth[20:40, 25:55]
    np.testing.assert_allclose(centre, 4.5, rtol=1e-5)
    # 60 deg horizontal field of view: the wall at 4.5 m spans +-2.6 m, wider than the 4 m room,
    # so the side walls show at the image edges, nearer than the far wall
    assert depth[30, 0] < 4.5 and depth[30, -1] < 4.5
    # the floor below the horizon gets nearer towards the bottom of the image (perspective)
    floor_column = depth[50:, 40]  # the floor meets the far wall 19 px below the centre
    assert np.all(np.diff(floor_column) < 0)
    np.testing.assert_allclose(depth[-1, 40], 1.25 / (29.5 / (40 / math.tan(math.radians(30)))), rtol=1e-3)


def test_nearer_object_occludes_the_wall():
    ball = synth.Sphere(np.array([2.0, 1.25, 3.5], np.float32), 0.5, synth.make_scene(0, 0).room_mats[0])
    scene = _empty_scene(objects=[ball])
    cam = synth.Camera.make(np.array([2.0, 1.25, 1.5]), 0.0, 0.0, 0.0, size=(61, 81))
    _, depth = synth.render(scene, cam, np.random.default_rng(0))
    assert depth[30, 40] == pytest.approx(1.5, rel=1e-4)  # 2 m to the ball's centre minus its radius
    # 25 px off-centre is ~20 deg off-axis, outside the ball's 14.5 deg: the wall behind it
    assert depth[30, 15] == pytest.approx(4.5, rel=1e-4) and depth[30, 65] == pytest.approx(4.5, rel=1e-4)
    assert depth[30, 32] < 2.0  # 8 px off-centre is on the ball's flank: farther than its front


def test_same_seed_same_bytes_different_seed_differs(tmp_path, jitter_dir):
    again = synth.generate(tmp_path / "again", scenes=3, views=3, size=SIZE, seed=7)
    assert _files(again) == _files(jitter_dir)
    other = _files(synth.generate(tmp_path / "other", scenes=3, views=3, size=SIZE, seed=8))
    ours = _files(jitter_dir)
    assert other.keys() == ours.keys()
    assert all(other[k] != ours[k] for k in ours if k.endswith((".png", ".npy")))


def test_process_pool_writes_the_same_bytes(tmp_path, jitter_dir):
    pooled = synth.generate(tmp_path / "pooled", scenes=3, views=3, size=SIZE, seed=7, workers=2)
    assert _files(pooled) == _files(jitter_dir)


def test_depth_within_room_and_images_not_constant(jitter_dir):
    scenes = {row["item"]: int(row["scene"]) for row in csv.DictReader(open(jitter_dir / "scenes.csv"))}
    for i in range(9):
        rgb, depth = _load(jitter_dir, i)
        assert rgb.shape == (*SIZE, 3) and depth.shape == SIZE and depth.dtype == np.float32
        diagonal = synth.make_scene(7, scenes[f"sample_{i:06d}_rgb.png"]).diagonal
        assert np.isfinite(depth).all() and depth.min() > 0.05 and depth.max() < diagonal
        assert rgb.std() > 10 and depth.std() > 0.05
        assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 200  # textured, not flat colours


def test_layout_lists_and_scenes_csv(jitter_dir):
    lines = (jitter_dir / "train_list.txt").read_text().splitlines()
    assert lines[4] == "sample_000004_rgb.png sample_000004_depth.npy" and len(lines) == 9
    rows = list(csv.reader(open(jitter_dir / "scenes.csv")))
    assert rows[0] == ["item", "scene"]
    assert [r[0] for r in rows[1:]] == [line.split()[0] for line in lines]
    assert [int(r[1]) for r in rows[1:]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    items = index_dataset(DatasetSpec(jitter_dir))  # readable as the competition layout
    sample = DepthDataset(items, DatasetSpec(jitter_dir), size=(32, 32), train=True)[0]
    assert sample["image"].shape == (3, 32, 32) and sample["depth"].shape == (1, 32, 32)


def test_jitter_views_are_near_duplicates(jitter_dir):
    depth = [_load(jitter_dir, i)[1] for i in range(9)]
    within = np.mean([np.abs(depth[s * 3 + a] - depth[s * 3 + b]).mean() for s in range(3) for a, b in [(0, 1), (1, 2)]])
    across = np.mean([np.abs(depth[a] - depth[b]).mean() for a, b in [(0, 3), (3, 6), (0, 6), (1, 4)]])
    assert within < 0.5 * across


def test_drift_ends_differ_more_than_neighbours(tmp_path):
    out = synth.generate(tmp_path / "drift", scenes=2, views=6, size=SIZE, seed=3, motion="drift")

    def content(rgb: np.ndarray) -> np.ndarray:  # 8x8 block means: layout, not texture grain
        return rgb.astype(float).reshape(SIZE[0] // 8, 8, SIZE[1] // 8, 8, 3).mean((1, 3))

    for s in range(2):
        views = [_load(out, s * 6 + v) for v in range(6)]
        depth = [d for _, d in views]
        step = [np.abs(depth[v + 1] - depth[v]).mean() for v in range(5)]
        assert np.abs(depth[5] - depth[0]).mean() > 1.2 * max(step)
        rgb = [content(c) for c, _ in views]
        step = [np.abs(rgb[v + 1] - rgb[v]).mean() for v in range(5)]
        assert np.abs(rgb[5] - rgb[0]).mean() > 1.2 * np.mean(step)


def test_ensure_synthetic_generates_once_and_repairs(tmp_path, monkeypatch):
    kw = dict(scenes=1, views=2, size=(24, 32), seed=1, motion="jitter")
    first = synth.ensure_synthetic(tmp_path, **kw)
    assert first.parent == tmp_path and len(index_dataset(DatasetSpec(first))) == 2
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp folder left behind
    stamp = (first / "sample_000000_rgb.png").stat().st_mtime_ns

    def fail(*a, **k):
        raise AssertionError("regenerated a complete dataset")

    monkeypatch.setattr(synth, "generate", fail)
    assert synth.ensure_synthetic(tmp_path, **kw) == first
    monkeypatch.undo()
    (first / "sample_000001_depth.npy").unlink()  # broken copy: regenerated in place
    assert synth.ensure_synthetic(tmp_path, **kw) == first
    assert (first / "sample_000001_depth.npy").is_file()
    assert (first / "sample_000000_rgb.png").stat().st_mtime_ns != stamp
    other = synth.ensure_synthetic(tmp_path, **{**kw, "motion": "drift"})
    assert other != first  # every parameter is part of the cache key


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="scenes"):
        synth.generate(tmp_path / "a", scenes=0, views=1, size=SIZE)
    with pytest.raises(ValueError, match="motion"):
        synth.generate(tmp_path / "a", scenes=1, views=1, size=SIZE, motion="orbit")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        synth.generate(tmp_path / "full", scenes=1, views=1, size=SIZE)


def test_cli(tmp_path, capsys):
    assert depth_grid(["synth", "--out", str(tmp_path / "c"), "--scenes", "1", "--views", "2", "--size", "24x32",
                       "--seed", "2", "--motion", "drift"]) == 0
    assert "wrote 2 items" in capsys.readouterr().out
    assert _load(tmp_path / "c", 1)[0].shape == (24, 32, 3)
    with pytest.raises(SystemExit) as e:
        depth_grid(["synth", "--out", str(tmp_path / "d"), "--size", "24by32"])
    assert e.value.code == 2
