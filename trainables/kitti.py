"""KITTI read from its own file structure (``DatasetSpec(format="kitti")``).

The annotated depth of the KITTI depth benchmark (``data_depth_annotated``) is laid out as
``[train|val/]<drive>/proj_depth/groundtruth/image_0{2,3}/<frame>.png``: 16-bit PNGs where
``metres = value / 256`` and 0 means no measurement. The images come from the raw recordings,
``<date>/<drive>/image_0{2,3}/data/<frame>.png`` (``date`` is the drive's first 10 characters,
e.g. ``2011_09_26``). Under the dataset folder, each ground-truth file is paired with the first
of these RGB files that exists:

    <root>/<date>/<drive>/image_0X/data/<frame>.png      (raw data beside the annotations)
    <root>/<drive>/image_0X/data/<frame>.png
    <drive folder of the ground truth>/image_0X/data/<frame>.png

A list file (``kitti_files.txt`` or ``--list``) of ``rgb depth`` lines relative to the folder
is read instead when present (a BTS ``eigen_test_files_with_gt.txt`` with its focal column and
``None`` rows removed). Items are sorted by their ground-truth path.
"""

from __future__ import annotations

from pathlib import Path

DEPTH_SCALE = 256.0  # KITTI's 16-bit depth PNGs: metres = value / 256
GROUNDTRUTH = "proj_depth/groundtruth"
MAX_DEPTH_LEVELS = 3  # how deep under the folder a drive may sit (train/<drive>/proj_depth/...)


def depth_files(root: Path) -> list[Path]:
    """Every ground-truth PNG under ``root`` (drives at most ``MAX_DEPTH_LEVELS`` folders down)."""
    found: list[Path] = []
    for level in range(MAX_DEPTH_LEVELS):
        pattern = "/".join(["*"] * (level + 1)) + f"/{GROUNDTRUTH}/image_0[23]/*.png"
        found += root.glob(pattern)
    return sorted(found)


def looks_like_kitti(root: Path) -> bool:
    """Whether ``root`` holds KITTI annotated depth in its own layout."""
    return any(root.glob(f"*/{GROUNDTRUTH}")) or any(root.glob(f"*/*/{GROUNDTRUTH}"))


def rgb_candidates(root: Path, depth: Path) -> list[Path]:
    """Where the image of ground-truth file ``depth`` may be, in order of preference."""
    camera, frame = depth.parent.name, depth.name
    drive_dir = depth.parents[3]  # <drive>/proj_depth/groundtruth/image_0X/<frame>.png
    drive = drive_dir.name
    tail = Path(camera) / "data" / frame
    return [root / drive[:10] / drive / tail, root / drive / tail, drive_dir / tail]


def kitti_pairs(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """``(rgb, depth)`` entries relative to ``root`` for every ground-truth file, and the
    problems found (a ground truth without an image)."""
    pairs, missing = [], []
    for depth in depth_files(root):
        rgb = next((c for c in rgb_candidates(root, depth) if c.is_file()), None)
        if rgb is None:
            tried = ", ".join(str(c) for c in rgb_candidates(root, depth))
            missing.append(f"{depth}: no RGB image found (looked for {tried})")
            continue
        pairs.append((rgb.relative_to(root).as_posix(), depth.relative_to(root).as_posix()))
    return pairs, missing
