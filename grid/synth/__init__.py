"""Built-in synthetic indoor scenes: the default dataset, rendered by vectorised numpy ray casting.

A scene is a room (floor, walls, ceiling; doors, pictures and a skirting board on the walls)
holding boxes (cabinets, tables on legs), spheres and cylinders with procedural textures, lit by
a ceiling lamp (Lambertian, hard shadows, distance fall-off) plus ambient and a fill light. A
pinhole camera with a NYU-like 60 deg horizontal field of view gives exact z-depth in metres
(along the optical axis, like a Kinect). Views of one scene are small camera moves (``jitter``)
or a continuous walk + pan (``drift``). Written in the competition layout (``cil``) with
``scenes.csv`` mapping each item to its scene. Same seed, same bytes.

Hand-written because no maintained library renders depth + RGB with numpy alone; a real
renderer (pyrender, Blender) would add an OpenGL/GPU dependency to the default data path.

Layout: ``scene`` samples rooms and shapes, ``render`` shades views and moves the camera, this
module writes datasets (``generate``, ``ensure_synthetic``); ``depth-grid synth`` is its command
(``grid/cli/synth.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from grid.synth.render import HFOV_DEG, MOTIONS, ROOM_NORMALS, Camera, camera_path, render
from grid.synth.scene import (
    EPS,
    GENERATOR_VERSION,
    Box,
    Cylinder,
    Material,
    Scene,
    Sphere,
    make_scene,
)

__all__ = [
    "EPS", "GENERATOR_VERSION", "HFOV_DEG", "MOTIONS", "ROOM_NORMALS", "Box", "Camera", "Cylinder", "Material",
    "Scene", "Sphere", "cache_key", "camera_path", "ensure_synthetic", "generate", "make_scene", "render",
]


# ---- writing ----------------------------------------------------------------------------------

def _render_scene(args: tuple) -> None:
    out_dir, index, views, size, seed, motion = args
    scene = make_scene(seed, index)
    for v, (pos, yaw, pitch, roll) in enumerate(camera_path(scene, seed, index, views, motion)):
        cam = Camera.make(pos, yaw, pitch, roll, size)
        rgb, depth = render(scene, cam, np.random.default_rng([seed, index, GENERATOR_VERSION, 3, v]))
        name = f"sample_{index * views + v:06d}"
        Image.fromarray(rgb).save(out_dir / f"{name}_rgb.png", compress_level=1)
        np.save(out_dir / f"{name}_depth.npy", depth)


def _check_args(scenes: int, views: int, size: tuple[int, int], motion: str) -> tuple[int, int]:
    if scenes < 1 or views < 1:
        raise ValueError(f"need scenes >= 1 and views >= 1, got scenes={scenes}, views={views}")
    h, w = (int(v) for v in size)
    if h < 8 or w < 8:
        raise ValueError(f"image size must be at least 8x8, got {size}")
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; valid: {MOTIONS}")
    return h, w


def generate(out_dir: Path, *, scenes: int, views: int, size: tuple[int, int] = (426, 560), seed: int = 0,
             motion: str = "jitter", workers: int = 1) -> Path:
    """Render ``scenes * views`` items into ``out_dir`` (new or empty) in the competition layout.

    Writes ``sample_NNNNNN_rgb.png`` (uint8 RGB), ``sample_NNNNNN_depth.npy`` (float32 metres),
    ``train_list.txt`` and ``scenes.csv`` (``item,scene``). Items of scene ``s`` are numbered
    ``s * views .. s * views + views - 1``. ``workers > 1`` renders scenes in a process pool;
    the bytes do not depend on it.
    """
    size = _check_args(scenes, views, size, motion)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: output folder exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(out_dir, s, views, size, seed, motion) for s in range(scenes)]
    if workers > 1 and scenes > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, scenes)) as pool:
            list(tqdm(pool.map(_render_scene, jobs), total=scenes, unit="scene", desc="synth", disable=None))
    else:
        for job in tqdm(jobs, unit="scene", desc="synth", disable=None):  # a bar on a terminal only
            _render_scene(job)
    names = [f"sample_{i:06d}" for i in range(scenes * views)]
    (out_dir / "train_list.txt").write_text("".join(f"{n}_rgb.png {n}_depth.npy\n" for n in names))
    (out_dir / "scenes.csv").write_text("item,scene\n" + "".join(f"{n}_rgb.png,{i // views}\n" for i, n in enumerate(names)))
    return out_dir


def cache_key(*, scenes: int, views: int, size: tuple[int, int], seed: int, motion: str) -> str:
    h, w = size
    return f"v{GENERATOR_VERSION}-{scenes}x{views}-{h}x{w}-seed{seed}-{motion}"


def _complete(folder: Path, n: int) -> bool:
    lst = folder / "train_list.txt"
    if not (lst.is_file() and (folder / "scenes.csv").is_file()):
        return False
    lines = lst.read_text().split()
    return len(lines) == 2 * n and all((folder / f).is_file() for f in lines)


def ensure_synthetic(cache_root: Path, *, scenes: int, views: int, size: tuple[int, int] = (426, 560), seed: int = 0,
                     motion: str = "jitter", workers: int = 1) -> Path:
    """The synthetic dataset for these parameters under ``cache_root``, generated once.

    Renders into a temp sibling folder and renames it into place, so a crash never leaves a
    half-written dataset under the final name, and concurrent callers agree on one copy.
    """
    size = _check_args(scenes, views, size, motion)
    final = Path(cache_root) / cache_key(scenes=scenes, views=views, size=size, seed=seed, motion=motion)
    if _complete(final, scenes * views):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        generate(tmp, scenes=scenes, views=views, size=size, seed=seed, motion=motion, workers=workers)
        if final.exists() and not _complete(final, scenes * views):
            shutil.rmtree(final)  # a broken copy left by something else: replace it
        try:
            os.rename(tmp, final)
        except OSError:
            if not _complete(final, scenes * views):  # another process won the race otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
