"""Dataset readers: the competition layout (``cil``) and RGB + PNG depth pairs (``pairs``).

Both layouts are a list file of ``rgb depth`` entries relative to a data folder. ``cil`` lines are
``<name>_rgb.png <name>_depth.npy`` with depth in metres; ``pairs`` lines point at 8/16-bit PNG
depth where ``metres = value / depth_scale`` and 0 is invalid (NYU, TUM, ScanNet style). A
``.npy`` depth is always read as metres. Invalid depth (0, NaN, inf, negative) becomes 0.0, so
"valid" is always ``target > 1e-6`` downstream.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EIGEN_CROP = (45, 471, 41, 601)  # rows 45:471, cols 41:601 of a 480x640 NYU frame -> 426x560
DEFAULT_LISTS = {"cil": "train_list.txt", "pairs": "pairs.txt"}
DEFAULT_LISTS["kitti"] = "kitti_files.txt"  # optional: without it KITTI's own layout is walked (trainables.kitti)
DEFAULT_SIZE = (426, 560)
VALID_MIN = 1e-6


class DataError(ValueError):
    """Bad input data. The message names the file and the problem."""


class PackSource(Protocol):
    """Where a packed dataset's bytes come from (``trainables.packed.Pack``): the readers below
    ask it, so this module needs no import of the pack's code."""

    def index(self, spec: DatasetSpec) -> list[Item]: ...

    def read(self, item: Item, which: str) -> bytes: ...


def parse_crop(crop: str | tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
    """``None``, ``"eigen"``, ``"none"`` or ``(top, bottom, left, right)`` -> a crop box or None."""
    if crop is None or crop == "none":
        return None
    if crop == "eigen":
        return EIGEN_CROP
    if isinstance(crop, str):
        raise DataError(f"unknown crop {crop!r}: use 'eigen', 'none' or (top, bottom, left, right)")
    box = tuple(int(v) for v in crop)
    if len(box) != 4 or box[0] < 0 or box[2] < 0 or box[1] <= box[0] or box[3] <= box[2]:
        raise DataError(f"invalid crop {crop!r}: need 0 <= top < bottom and 0 <= left < right")
    return box  # type: ignore[return-value]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and how to read it.

    Args:
        root: folder of the dataset; list entries are relative to ``data_dir`` (default: the
            list file's folder; for ``cil`` also ``<list folder>/train`` as on Kaggle).
        format: ``"cil"`` or ``"pairs"``.
        list_file: list file, relative to ``root`` or absolute (default per format).
        depth_scale: PNG depth only: ``metres = value / depth_scale``.
        crop: ``None``, ``"eigen"`` or ``(top, bottom, left, right)``, applied to RGB and depth.
        data_dir: folder the list's entries are relative to (default: see ``root``).
    """

    root: Path
    format: str = "cil"
    list_file: str | None = None
    depth_scale: float = 1.0
    crop: tuple[int, int, int, int] | None = None
    data_dir: Path | None = field(default=None)
    pack: PackSource | None = None  # a packed dataset (trainables.packed): its items' bytes come from here

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        if self.format not in DEFAULT_LISTS:
            raise DataError(f"unknown dataset format {self.format!r}; valid: {sorted(DEFAULT_LISTS)}")
        scale = float(self.depth_scale)
        if not math.isfinite(scale) or scale <= 0:
            raise DataError(f"depth_scale must be a positive number, got {self.depth_scale!r}")
        if self.format == "kitti" and scale == 1.0:  # the default: KITTI's PNGs are metres * 256
            from trainables.kitti import DEPTH_SCALE

            scale = DEPTH_SCALE
        object.__setattr__(self, "depth_scale", scale)
        object.__setattr__(self, "crop", parse_crop(self.crop))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())

    @property
    def list_path(self) -> Path:
        return self.root / (self.list_file or DEFAULT_LISTS[self.format])

    @classmethod
    def detect(cls, root: str | Path, format: str | None = None, **kw) -> DatasetSpec:
        """Build a spec, choosing ``format`` from the list file present when not given."""
        root = Path(root).expanduser()
        if root.is_file():
            raise DataError(f"{root}: is a file; --data takes the dataset folder (the one holding "
                            f"{' or '.join(sorted(DEFAULT_LISTS.values()))})")
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder does not exist")
        if format is None and kw.get("list_file"):
            format = sniff_format(root / kw["list_file"])
        if format is None and not any((root / name).is_file() for name in DEFAULT_LISTS.values()):
            from trainables.kitti import looks_like_kitti

            format = "kitti" if looks_like_kitti(root) else None
        if format is None:
            found = [f for f, name in DEFAULT_LISTS.items() if (root / name).is_file()]
            if len(found) != 1:
                raise DataError(
                    f"{root}: cannot tell the dataset format (expected exactly one of "
                    f"{sorted(DEFAULT_LISTS.values())}); pass --format cil|pairs"
                )
            format = found[0]
        return cls(root=root, format=format, **kw)


def sniff_format(list_path: Path) -> str:
    """``cil`` when the first entry looks like the competition layout, else ``pairs``."""
    if not list_path.is_file():
        raise DataError(f"{list_path}: list file not found")
    try:
        with open(list_path, encoding="utf-8-sig") as fh:
            first = next((line.split() for line in fh if line.strip() and not line.lstrip().startswith("#")), [])
    except OSError as e:
        raise DataError(f"{list_path}: cannot read list file ({e})") from e
    cil = first and (first[0].endswith("_rgb.png") or (len(first) > 1 and first[1].endswith(".npy")))
    return "cil" if cil else "pairs"


@dataclass(frozen=True)
class Item:
    """One dataset entry. ``name`` is the RGB entry exactly as written in the list file."""

    name: str
    rgb: Path
    depth: Path
    depth_rel: str
    # packed (trainables.packed.INDEX_COLUMNS): shard, RGB offset, bytes, CRC-32, the same of the
    # depth, the RGB's SHA-1
    member: tuple | None = None

    @property
    def pred_name(self) -> str:
        """Relative path of this item's prediction file (the depth entry with suffix .npy)."""
        return str(Path(self.depth_rel).with_suffix(".npy"))


def _resolve_entry(base: Path, entry: str, list_path: Path, lineno: int) -> Path:
    if Path(entry).is_absolute():
        raise DataError(f"{list_path}:{lineno}: absolute path {entry!r} not allowed; entries are relative to {base}")
    # lexical, not resolve(): files that are symlinks into a shared store must stay allowed
    path = Path(os.path.normpath(base / entry))
    if not path.is_relative_to(base):
        raise DataError(f"{list_path}:{lineno}: entry {entry!r} escapes the dataset folder {base}")
    return path


def _guess_data_dir(spec: DatasetSpec, first_entry: str) -> Path:
    if spec.data_dir is not None:
        return spec.data_dir
    base = spec.list_path.parent
    if spec.format == "cil" and not (base / first_entry).exists():
        # Kaggle layout: train_list.txt beside train/, test_list.txt beside test/.
        sub = base / spec.list_path.stem.removesuffix("_list")
        if (sub / first_entry).exists():
            return sub
    return base


def _default_depth_entry(rgb_entry: str) -> str:
    if rgb_entry.endswith("_rgb.png"):
        return rgb_entry[: -len("_rgb.png")] + "_depth.npy"
    return str(Path(rgb_entry).with_suffix(".npy"))


def _check_separator(base: Path, entry: str, list_path: Path, lineno: int) -> None:
    """A one-column line that is two entries joined by ``,`` / ``;`` (a CSV habit): say so,
    rather than derive a depth name from it (which collides with the line itself)."""
    for sep in (",", ";"):
        parts = [p for p in entry.split(sep) if p]
        if len(parts) == 2 and not (base / entry).exists():
            raise DataError(f"{list_path}:{lineno}: entries are separated by {sep!r}; a list file separates "
                            f"them with spaces ('rgb depth'), got {entry!r}")


def index_dataset(spec: DatasetSpec, *, require_depth: bool = True, check_files: bool = True) -> list[Item]:
    """Parse and validate the list file; every RGB (and, if required, depth) file must exist.

    With ``require_depth=False`` (a test list) a line may name only the RGB file; the
    prediction name is then derived from it (``x_rgb.png`` -> ``x_depth.npy``).
    ``check_files=False`` skips the existence check, so that ``depth-grid check`` can report
    missing files per item instead of failing on the first ones.
    """
    if spec.pack is not None:  # a packed dataset: its manifest is the list
        return spec.pack.index(spec)
    path = spec.list_path
    if spec.format == "kitti" and not path.is_file():
        return _index_kitti(spec)
    if not path.is_file():
        raise DataError(f"{path}: list file not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read list file ({e})") from e
    entries = [(n, line.split()) for n, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise DataError(f"{path}: list file is empty")
    base = _guess_data_dir(spec, entries[0][1][0]).resolve()
    items: list[Item] = []
    seen: dict[Path, int] = {}
    missing: list[str] = []
    for lineno, cols in entries:
        if len(cols) == 1:
            _check_separator(base, cols[0], path, lineno)
        if len(cols) == 1 and not require_depth:
            cols = [cols[0], _default_depth_entry(cols[0])]
        if len(cols) != 2:
            raise DataError(f"{path}:{lineno}: expected 'rgb depth', got {' '.join(cols)!r}")
        rgb_entry, depth_entry = cols
        rgb = _resolve_entry(base, rgb_entry, path, lineno)
        depth = _resolve_entry(base, depth_entry, path, lineno)
        for entry, file in ((rgb_entry, rgb), (depth_entry, depth)):  # by file: a.png == ./a.png
            if file in seen:
                raise DataError(f"{path}:{lineno}: duplicate entry {entry!r} (first on line {seen[file]})")
            seen[file] = lineno
        if check_files and not rgb.is_file():
            missing.append(f"{path}:{lineno}: RGB file {rgb} not found")
        if check_files and require_depth and not depth.is_file():
            missing.append(f"{path}:{lineno}: depth file {depth} not found")
        items.append(Item(name=rgb_entry, rgb=rgb, depth=depth, depth_rel=depth_entry))
    if missing:
        more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        raise DataError("missing files:\n  " + "\n  ".join(missing[:10]) + more)
    return items


def _index_kitti(spec: DatasetSpec) -> list[Item]:
    """KITTI's items from its own folder structure (``trainables.kitti``), sorted by depth path."""
    from trainables.kitti import kitti_pairs

    base = spec.data_dir or spec.root
    pairs, missing = kitti_pairs(base)
    if missing:
        more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        raise DataError("missing files:\n  " + "\n  ".join(missing[:10]) + more)
    if not pairs:
        raise DataError(f"{base}: no KITTI ground truth (<drive>/proj_depth/groundtruth/image_02/*.png) "
                        f"and no list file {spec.list_path.name}")
    return [Item(name=rgb, rgb=base / rgb, depth=base / depth, depth_rel=depth) for rgb, depth in pairs]


def _apply_crop(arr: np.ndarray, crop: tuple[int, int, int, int] | None, path: Path) -> np.ndarray:
    if crop is None:
        return arr
    top, bottom, left, right = crop
    if bottom > arr.shape[0] or right > arr.shape[1]:
        raise DataError(f"{path}: crop {crop} does not fit an image of {arr.shape[0]}x{arr.shape[1]}")
    return arr[top:bottom, left:right]


PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)  # corrupt/truncated


def _packed(item: Item, spec: DatasetSpec, which: str) -> bytes | None:
    """A packed item's ``rgb`` / ``depth`` bytes from its shard; None for a file on disk."""
    return None if item.member is None or spec.pack is None else spec.pack.read(item, which)


def _byte_tensor(data: bytes):
    """``data`` as the uint8 tensor torchvision's decoders take (a packed JPEG)."""
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _decode_rgb(path: Path, data: bytes | None = None) -> np.ndarray:
    """uint8 (H, W, 3), a view of (3, H, W) planes. JPEGs go through torchvision's libjpeg-turbo
    decoder (about twice PIL's speed here); everything else, and any JPEG it refuses, through
    PIL. Not torchvision for PNG: its libpng error path crashed the process on a corrupt file."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        import torchvision.io as tvio  # here, not at the top: a DataError must not cost torch's import

        try:
            raw = tvio.read_file(str(path)) if data is None else _byte_tensor(data)
            return tvio.decode_jpeg(raw, mode=tvio.ImageReadMode.RGB).permute(1, 2, 0).numpy()
        except RuntimeError:
            pass  # PIL below either reads it (CMYK, unusual variants) or says what is wrong
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            img.load()
            # channel planes (C, H, W) viewed as (H, W, C): normalize then reads contiguous planes
            planes = np.stack([np.asarray(band) for band in (img if img.mode == "RGB" else img.convert("RGB")).split()])
            return planes.transpose(1, 2, 0)
    except FileNotFoundError as e:
        raise DataError(f"{path}: image file not found") from e
    except PIL_ERRORS as e:
        raise DataError(f"{path}: unreadable or corrupt image ({e})") from e


def _npy_view(data: bytes | bytearray) -> np.ndarray:
    """A packed ``.npy``'s array over its bytes, not copied (read-only: ``_to_metres`` writes the
    metres into a new array); errors as ``np.load``'s."""
    fp = io.BytesIO(memoryview(data)[: 1 << 17])  # the header only (at most 64 KiB in practice)
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    shape, fortran, dtype = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(
        version, fmt.read_array_header_2_0)(fp)
    if dtype.hasobject:
        raise ValueError("the .npy holds Python objects")
    count = math.prod(shape)
    arr = np.frombuffer(data, dtype, count=count, offset=fp.tell())  # ValueError when truncated
    return arr.reshape(shape, order="F" if fortran else "C")


def _decode_depth(path: Path, data: bytes | None = None) -> np.ndarray:
    """Raw depth values (H, W) as stored: a numeric ``.npy`` or a single-channel PNG."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False) if data is None else _npy_view(data)
        except FileNotFoundError as e:
            raise DataError(f"{path}: depth file not found") from e
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: corrupt or truncated .npy ({e})") from e
        if not isinstance(arr, np.ndarray):  # an .npz archive under a .npy name
            arr.close()
            raise DataError(f"{path}: not a .npy array (an .npz archive?)")
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.squeeze()
        if arr.ndim != 2 or arr.dtype.kind not in "uif" or arr.size == 0:
            raise DataError(f"{path}: depth must be a non-empty 2-D real numeric array, got {arr.dtype} {arr.shape}")
        return arr
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            img.load()
            if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
                raise DataError(f"{path}: depth PNG must be single-channel 8/16-bit, got mode {img.mode}")
            return np.asarray(img)
    except FileNotFoundError as e:
        raise DataError(f"{path}: depth file not found") from e
    except DataError:
        raise
    except PIL_ERRORS as e:
        raise DataError(f"{path}: unreadable or corrupt depth image ({e})") from e


def _to_metres(raw: np.ndarray, path: Path, depth_scale: float, flip: bool = False) -> np.ndarray:
    """float32 metres, mirrored left-right if ``flip``; 0, NaN, inf and negative values become
    0.0 (invalid). Returns ``raw`` itself when it already is float32 metres (fresh from np.load).
    """
    scale = 1.0 if path.suffix.lower() == ".npy" else depth_scale  # .npy is always metres
    if raw.dtype == np.float32 and scale == 1.0 and not flip and raw.flags.writeable:  # not a packed view
        depth = raw
    else:  # one pass converts, scales and mirrors: no extra buffer (each one costs page faults)
        depth = np.empty(raw.shape, np.float32)
        np.divide(raw, np.float32(scale), out=depth[:, ::-1] if flip else depth, dtype=np.float32)
    # unsigned values cannot be negative, NaN or inf; else two reductions spare the masks when all is valid
    if raw.dtype.kind != "u" and not (depth.min() > 0 and depth.max() < np.inf):  # NaN fails both
        depth = np.where((depth > 0) & (depth < np.inf), depth, np.float32(0))
    return depth


def load_rgb(item: Item, spec: DatasetSpec) -> np.ndarray:
    """The item's image as uint8 (H, W, 3), cropped (possibly a strided view)."""
    return _apply_crop(_decode_rgb(item.rgb, _packed(item, spec, "rgb")), spec.crop, item.rgb)


def load_depth(item: Item, spec: DatasetSpec) -> np.ndarray:
    """The item's depth as float32 (H, W) metres, cropped; invalid pixels set to 0.0."""
    raw = _decode_depth(item.depth, _packed(item, spec, "depth"))
    return _to_metres(_apply_crop(raw, spec.crop, item.depth), item.depth, spec.depth_scale)


def load_pair(item: Item, spec: DatasetSpec, *, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """RGB and depth, checked to have the same size before the crop; ``flip`` mirrors both
    left-right (the image as a view, the depth in the pass that converts it)."""
    rgb, raw = _decode_rgb(item.rgb, _packed(item, spec, "rgb")), _decode_depth(item.depth, _packed(item, spec, "depth"))
    if rgb.shape[:2] != raw.shape:
        raise DataError(
            f"{item.depth}: depth is {raw.shape[0]}x{raw.shape[1]} but {item.rgb.name} is "
            f"{rgb.shape[0]}x{rgb.shape[1]}"
        )
    depth = _to_metres(_apply_crop(raw, spec.crop, item.depth), item.depth, spec.depth_scale, flip)
    rgb = _apply_crop(rgb, spec.crop, item.rgb)
    return (rgb[:, ::-1] if flip else rgb), depth


@dataclass(frozen=True)
class ItemReport:
    """What ``inspect_item`` found: problems (empty when fine) and statistics."""

    name: str
    problems: tuple[str, ...]
    shape: tuple[int, int] | None = None
    depth_min: float = float("nan")
    depth_max: float = float("nan")
    valid_share: float = 0.0


def inspect_item(item: Item, spec: DatasetSpec) -> ItemReport:
    """Read one item fully and report its problems instead of raising."""
    try:
        rgb, depth = load_pair(item, spec)
    except DataError as e:
        return ItemReport(item.name, (str(e),))
    valid = depth > VALID_MIN
    if not valid.any():
        return ItemReport(item.name, (f"{item.depth}: no valid depth pixel",), rgb.shape[:2])
    if rgb.min() == rgb.max():
        return ItemReport(item.name, (f"{item.rgb}: image is constant",), rgb.shape[:2])
    return ItemReport(
        item.name, (), rgb.shape[:2], float(depth[valid].min()), float(depth[valid].max()), float(valid.mean())
    )


def check_item(item: Item, spec: DatasetSpec) -> list[str]:
    """Problems of one item (empty when it reads fine and has valid depth)."""
    return list(inspect_item(item, spec).problems)
