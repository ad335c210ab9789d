"""Shared fixtures: CPU only, generated data in temp folders, one session-scoped local Ray."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

NYU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyu_labeled_train"
# CI sets this: a missing asset (real data, fetched weights, a tool) fails the test that needs it
# instead of skipping it, so a moved path or a broken fetch cannot pass unnoticed.
REQUIRE_ASSETS = "DEPTH_GRID_REQUIRE_ASSETS"


def require_or_skip(reason: str) -> NoReturn:
    """Skip the calling test for a missing asset; fail it when ``DEPTH_GRID_REQUIRE_ASSETS=1``."""
    if os.environ.get(REQUIRE_ASSETS) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ASSETS}=1: a missing asset is a failure)", pytrace=False)
    pytest.skip(reason)


def write_cil(root: Path, n: int = 4, size: tuple[int, int] = (24, 32), seed: int = 0,
              list_name: str = "train_list.txt") -> Path:
    """A tiny competition-layout dataset of random images and smooth positive depth."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    h, w = size
    for i in range(n):
        name = f"sample_{i:06d}"
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / f"{name}_rgb.png")
        yy, xx = np.mgrid[0:h, 0:w]
        depth = (1.0 + 3.0 * yy / h + 0.5 * xx / w + rng.uniform(0, 0.1)).astype(np.float32)
        np.save(root / f"{name}_depth.npy", depth)
        lines.append(f"{name}_rgb.png {name}_depth.npy")
    (root / list_name).write_text("\n".join(lines) + "\n")
    return root


def write_pairs(root: Path, n: int = 4, size: tuple[int, int] = (24, 32), scale: float = 1000.0,
                seed: int = 0) -> Path:
    """A tiny RGB + 16-bit PNG depth dataset (``metres = value / scale``)."""
    rng = np.random.default_rng(seed)
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    lines = []
    h, w = size
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"rgb/{i:04d}.png")
        depth_m = rng.uniform(0.5, 5.0, (h, w))
        depth_m[0, 0] = 0.0  # one invalid pixel
        Image.fromarray((depth_m * scale).astype(np.uint16)).save(root / f"depth/{i:04d}.png")
        lines.append(f"rgb/{i:04d}.png depth/{i:04d}.png")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def cil_dir(tmp_path: Path) -> Path:
    return write_cil(tmp_path / "cil")


@pytest.fixture
def pairs_dir(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "pairs")


@pytest.fixture(scope="session")
def nyu_dir() -> Path:
    if not (NYU_DIR / "pairs.txt").is_file():
        require_or_skip(f"real NYU data not found at {NYU_DIR}")
    return NYU_DIR


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    """The fetched MobileNetV2 weights (``python -m grid.weights fetch``); absent: skipped (or a
    failure under DEPTH_GRID_REQUIRE_ASSETS=1); present with the wrong SHA-256: always a failure."""
    from trainables.weights import (
        WeightsUnavailableError,
        ensure_mobilenet_v2,
        mobilenet_v2_weights_path,
    )

    path = mobilenet_v2_weights_path()
    if not path.is_file():
        require_or_skip(f"MobileNetV2 weights absent: {path} (run `python -m grid.weights fetch`)")
    try:
        return ensure_mobilenet_v2()
    except WeightsUnavailableError as e:  # there, but not the real file: never a skip
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session: 2 CPUs, one logical GPU (scheduling only: trials
    that hold it still run on the CPU here), a small object store, a short temp dir."""
    import ray

    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are length-limited
    ray.init(address="local", num_cpus=2, num_gpus=1, object_store_memory=int(2e8), include_dashboard=False,
             _temp_dir=tmp, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def write_nyu_like(root: Path, *, scenes: int = 5, views: int = 3, seed: int = 0,
                   scale: float = 1000.0) -> Path:
    """Generated scenes as 480x640 RGB + 16-bit PNG depth pairs (``metres = value / scale``),
    the NYU layout that ``--format pairs --crop eigen`` reads; ``pairs.txt`` in list order."""
    from grid.synth import generate

    cil = generate(root.with_name(root.name + "-cil"), scenes=scenes, views=views, size=(480, 640), seed=seed)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    lines = []
    for i, rgb in enumerate(sorted(cil.glob("*_rgb.png"))):
        depth = np.load(rgb.with_name(rgb.name.replace("_rgb.png", "_depth.npy")))
        Image.open(rgb).save(root / f"rgb/{i:04d}.png")
        Image.fromarray(np.round(depth * scale).astype(np.uint16)).save(root / f"depth/{i:04d}.png")
        lines.append(f"rgb/{i:04d}.png depth/{i:04d}.png")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    shutil.rmtree(cil)
    return root


@pytest.fixture
def drawn_figures(monkeypatch) -> dict:
    """Every figure ``grid.figures`` saves in the test, by file name: the ``Figure`` objects, to
    read their axes and series back (the files are written as usual)."""
    import grid.figures

    drawn, save = {}, grid.figures.save_figure

    def keep(fig, path, **kw):
        drawn[Path(path).name] = fig
        return save(fig, path, **kw)

    monkeypatch.setattr(grid.figures, "save_figure", keep)
    return drawn
