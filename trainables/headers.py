"""The run's fast check of a dataset: every item's headers, nothing decoded.

``depth-grid run`` calls ``check_headers`` on every item before Ray starts: an ``.npy`` depth's
shape, dtype and byte count (a truncated file is shorter than its header says), an image's size
and mode (a PNG must end with its IEND chunk), depth against RGB sizes, the crop, and whether an
``.npy`` holds any valid pixel. ``depth-grid check`` (``grid.doctor``) decodes everything instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from trainables.data import PIL_ERRORS, VALID_MIN, DataError, DatasetSpec, Item

PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # a PNG's last chunk: a file cut short lacks it
DEPTH_MODES = ("L", "I", "I;16", "I;16B", "I;16L", "F")  # _decode_depth's single-channel modes


def _image_header(path: Path, what: str) -> tuple[int, int, str]:
    """(height, width, mode) from the image header (PIL opens lazily); a PNG must also end with
    its IEND chunk, which a truncated file lacks."""
    try:
        with Image.open(path) as img:
            size, mode, kind = img.size, img.mode, img.format
        if kind == "PNG":
            with open(path, "rb") as fh:
                fh.seek(-len(PNG_END), os.SEEK_END)
                if fh.read() != PNG_END:
                    raise DataError(f"{path}: truncated {what} PNG (no IEND chunk at its end)")
    except FileNotFoundError as e:
        raise DataError(f"{path}: {what} file not found") from e
    except PIL_ERRORS as e:
        raise DataError(f"{path}: unreadable or corrupt {what} image ({e})") from e
    return size[1], size[0], mode


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the ``.npy`` header; the file must hold every byte they promise."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if read is None:
                raise DataError(f"{path}: .npy format version {version} is not supported")
            shape, _, dtype = read(fh)
            expected = fh.tell() + math.prod(shape) * dtype.itemsize
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError as e:
        raise DataError(f"{path}: depth file not found") from e
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy file ({e})") from e
    if dtype.hasobject:
        raise DataError(f"{path}: depth must be numeric, the .npy holds Python objects")
    if size < expected:
        raise DataError(f"{path}: truncated .npy ({size} of {expected} bytes for {dtype} {shape})")
    return shape, dtype


def _depth_shape(shape: tuple[int, ...], dtype: np.dtype, path: Path) -> tuple[int, int]:
    """The (H, W) ``_decode_depth`` would give, or the DataError it would raise."""
    if len(shape) == 3 and 1 in (shape[0], shape[-1]):
        shape = tuple(n for n in shape if n != 1) or (1, 1)
    if len(shape) != 2 or dtype.kind not in "uif" or 0 in shape:
        raise DataError(f"{path}: depth must be a non-empty 2-D real numeric array, got {dtype} {shape}")
    return shape[0], shape[1]


def _any_valid_npy(path: Path) -> bool:
    """Whether some pixel is valid depth (> 0 and finite; NaN fails both). Memory-mapped: a
    sparse sample first, so a healthy file costs a few pages; the whole array only if it finds none."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    for part in (arr[..., ::8, ::8], arr):
        with np.errstate(invalid="ignore"):
            if np.any((part > VALID_MIN) & (part < np.inf)):
                return True
    return False


def _item_problem(item: Item, spec: DatasetSpec) -> str | None:
    """What ``load_pair`` or training would fail on, read from the headers; None when fine."""
    try:
        h, w, _ = _image_header(item.rgb, "image")
        if item.depth.suffix.lower() == ".npy":
            shape, dtype = _npy_header(item.depth)
            dh, dw = _depth_shape(shape, dtype, item.depth)
        else:
            dh, dw, mode = _image_header(item.depth, "depth")
            if mode not in DEPTH_MODES:
                raise DataError(f"{item.depth}: depth PNG must be single-channel 8/16-bit, got mode {mode}")
        if (dh, dw) != (h, w):
            raise DataError(f"{item.depth}: depth is {dh}x{dw} but {item.rgb.name} is {h}x{w}")
        if spec.crop is not None and (spec.crop[1] > h or spec.crop[3] > w):
            raise DataError(f"{item.rgb}: crop {spec.crop} does not fit an image of {h}x{w}")
        if item.depth.suffix.lower() == ".npy" and not _any_valid_npy(item.depth):
            raise DataError(f"{item.depth}: no valid depth pixel (all 0, negative, NaN or inf)")
    except DataError as e:
        return str(e)
    return None


def check_headers(items: list[Item], spec: DatasetSpec) -> None:
    """Check every item as far as its file headers tell, without decoding an image: readable
    headers, a complete file (a PNG's end chunk, a ``.npy``'s byte count), a 2-D numeric depth of
    the image's size, a crop that fits, and some valid pixel in a ``.npy`` depth. What only a
    decode shows (a corrupt PNG body, a depth PNG with no valid pixel) is left to
    ``depth-grid check``, which reads everything.

    Raises:
        DataError: naming the first bad items and how many there are.
    """
    problems = [p for p in (_item_problem(it, spec) for it in items) if p is not None]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(f"{len(problems)} of {len(items)} item(s) cannot be trained on: "
                        f"{'; '.join(problems[:3])}{more}; `depth-grid check --data {spec.root}` lists each")
