"""Dataset readers: the competition layout (``cil``) and RGB + PNG depth pairs (``pairs``).

Both layouts are a list file of ``rgb depth`` entries relative to a data folder. ``cil`` lines are
``<name>_rgb.png <name>_depth.npy`` with depth in metres; ``pairs`` lines point at 8/16-bit PNG
depth where ``metres = value / depth_scale`` and 0 is invalid (NYU, TUM, ScanNet style). A
``.npy`` depth is always read as metres. Invalid depth (0, NaN, inf, negative) becomes 0.0, so
"valid" is always ``target > 1e-6`` downstream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EIGEN_CROP = (45, 471, 41, 601)  # rows 45:471, cols 41:601 of a 480x640 NYU frame -> 426x560
DEFAULT_LISTS = {"cil": "train_list.txt", "pairs": "pairs.txt"}
DEFAULT_SIZE = (426, 560)
VALID_MIN = 1e-6


class DataError(ValueError):
    """Bad input data. The message names the file and the problem."""


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        if self.format not in DEFAULT_LISTS:
            raise DataError(f"unknown dataset format {self.format!r}; valid: {sorted(DEFAULT_LISTS)}")
        scale = float(self.depth_scale)
        if not math.isfinite(scale) or scale <= 0:
            raise DataError(f"depth_scale must be a positive number, got {self.depth_scale!r}")
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
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder does not exist")
        if format is None:
            found = [f for f, name in DEFAULT_LISTS.items() if (root / name).is_file()]
            if len(found) != 1:
                raise DataError(
                    f"{root}: cannot tell the dataset format (expected exactly one of "
                    f"{sorted(DEFAULT_LISTS.values())}); pass --format cil|pairs"
                )
            format = found[0]
        return cls(root=root, format=format, **kw)


@dataclass(frozen=True)
class Item:
    """One dataset entry. ``name`` is the RGB entry exactly as written in the list file."""

    name: str
    rgb: Path
    depth: Path
    depth_rel: str

    @property
    def pred_name(self) -> str:
        """Relative path of this item's prediction file (the depth entry with suffix .npy)."""
        return str(Path(self.depth_rel).with_suffix(".npy"))


def _resolve_entry(base: Path, entry: str, list_path: Path, lineno: int) -> Path:
    if Path(entry).is_absolute():
        raise DataError(f"{list_path}:{lineno}: absolute path {entry!r} not allowed; entries are relative to {base}")
    path = (base / entry).resolve()
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


def index_dataset(spec: DatasetSpec, *, require_depth: bool = True) -> list[Item]:
    """Parse and validate the list file; every RGB (and, if required, depth) file must exist.

    With ``require_depth=False`` (a test list) a line may name only the RGB file; the
    prediction name is then derived from it (``x_rgb.png`` -> ``x_depth.npy``).
    """
    path = spec.list_path
    if not path.is_file():
        raise DataError(f"{path}: list file not found")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read list file ({e})") from e
    entries = [(n, line.split()) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    if not entries:
        raise DataError(f"{path}: list file is empty")
    base = _guess_data_dir(spec, entries[0][1][0]).resolve()
    items: list[Item] = []
    seen: dict[str, int] = {}
    missing: list[str] = []
    for lineno, cols in entries:
        if len(cols) == 1 and not require_depth:
            cols = [cols[0], _default_depth_entry(cols[0])]
        if len(cols) != 2:
            raise DataError(f"{path}:{lineno}: expected 'rgb depth', got {' '.join(cols)!r}")
        rgb_entry, depth_entry = cols
        for entry in cols:
            if entry in seen:
                raise DataError(f"{path}:{lineno}: duplicate entry {entry!r} (first on line {seen[entry]})")
            seen[entry] = lineno
        rgb = _resolve_entry(base, rgb_entry, path, lineno)
        depth = _resolve_entry(base, depth_entry, path, lineno)
        if not rgb.is_file():
            missing.append(f"{path}:{lineno}: RGB file {rgb} not found")
        if require_depth and not depth.is_file():
            missing.append(f"{path}:{lineno}: depth file {depth} not found")
        items.append(Item(name=rgb_entry, rgb=rgb, depth=depth, depth_rel=depth_entry))
    if missing:
        more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        raise DataError("missing files:\n  " + "\n  ".join(missing[:10]) + more)
    return items


def _apply_crop(arr: np.ndarray, crop: tuple[int, int, int, int] | None, path: Path) -> np.ndarray:
    if crop is None:
        return arr
    top, bottom, left, right = crop
    if bottom > arr.shape[0] or right > arr.shape[1]:
        raise DataError(f"{path}: crop {crop} does not fit an image of {arr.shape[0]}x{arr.shape[1]}")
    return arr[top:bottom, left:right]


def load_rgb(item: Item, spec: DatasetSpec) -> np.ndarray:
    """The item's image as uint8 (H, W, 3), cropped."""
    try:
        with Image.open(item.rgb) as img:
            img.load()
            rgb = np.array(img.convert("RGB"))
    except FileNotFoundError as e:
        raise DataError(f"{item.rgb}: image file not found") from e
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for corrupt/truncated files
        raise DataError(f"{item.rgb}: unreadable or corrupt image ({e})") from e
    return _apply_crop(rgb, spec.crop, item.rgb)


def _read_depth_raw(path: Path, depth_scale: float) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError as e:
            raise DataError(f"{path}: depth file not found") from e
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: corrupt or truncated .npy ({e})") from e
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.squeeze()
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"{path}: depth must be a 2-D numeric array, got {arr.dtype} {arr.shape}")
        return arr.astype(np.float32)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
                raise DataError(f"{path}: depth PNG must be single-channel 8/16-bit, got mode {img.mode}")
            arr = np.asarray(img)
    except FileNotFoundError as e:
        raise DataError(f"{path}: depth file not found") from e
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable or corrupt depth image ({e})") from e
    return arr.astype(np.float32) / depth_scale


def load_depth(item: Item, spec: DatasetSpec) -> np.ndarray:
    """The item's depth as float32 (H, W) metres, cropped; invalid pixels set to 0.0."""
    depth = _read_depth_raw(item.depth, spec.depth_scale)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    return _apply_crop(depth, spec.crop, item.depth)


def load_pair(item: Item, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """RGB and depth, checked to have the same size."""
    rgb, depth = load_rgb(item, spec), load_depth(item, spec)
    if rgb.shape[:2] != depth.shape:
        raise DataError(
            f"{item.depth}: depth is {depth.shape[0]}x{depth.shape[1]} but {item.rgb.name} is "
            f"{rgb.shape[0]}x{rgb.shape[1]} (after crop)"
        )
    return rgb, depth


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
    if float(rgb.std()) == 0.0:
        return ItemReport(item.name, (f"{item.rgb}: image is constant",), rgb.shape[:2])
    return ItemReport(
        item.name, (), rgb.shape[:2], float(depth[valid].min()), float(depth[valid].max()), float(valid.mean())
    )


def normalize(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> ImageNet-normalised float32 (3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return x.sub_(mean).div_(std)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize`` for (3, H, W) or (B, 3, H, W); values in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of a (C, H, W) image tensor."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def resize_depth(d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of a (1, H, W) depth map, so invalid pixels never blend into valid ones."""
    if tuple(d.shape[-2:]) == tuple(size):
        return d
    return F.interpolate(d[None], size=size, mode="nearest")[0]


class DepthDataset(torch.utils.data.Dataset):
    """Samples ``{"image", "depth", "name", "index"}`` for training or evaluation.

    Args:
        items: from ``index_dataset``.
        spec: how to read them.
        size: model input size (H, W); ``None`` keeps the native size.
        train: resize the target to ``size`` too and apply a paired random horizontal flip;
            otherwise the target stays at native resolution (evaluation).
        with_depth: ``False`` for test lists without ground truth (no ``"depth"`` key).
    """

    def __init__(
        self,
        items: list[Item],
        spec: DatasetSpec,
        size: tuple[int, int] | None = DEFAULT_SIZE,
        train: bool = False,
        with_depth: bool = True,
    ) -> None:
        self.items, self.spec, self.size = list(items), spec, size
        self.train, self.with_depth = train, with_depth

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        if self.with_depth:
            rgb, depth_np = load_pair(item, self.spec)
        else:
            rgb, depth_np = load_rgb(item, self.spec), None
        image = normalize(rgb)  # (3, H, W)
        if self.size is not None:
            image = resize_image(image, self.size)
        sample = {"image": image, "name": item.name, "index": index}
        if depth_np is not None:
            depth = torch.from_numpy(depth_np)[None]  # (1, H, W)
            if self.train and self.size is not None:
                depth = resize_depth(depth, self.size)
            sample["depth"] = depth
        if self.train and torch.rand(()) < 0.5:
            sample["image"] = sample["image"].flip(-1)
            if "depth" in sample:
                sample["depth"] = sample["depth"].flip(-1)
        return sample


def collate(batch: list[dict]) -> dict:
    """Stack images; stack depths when they share a size, else keep them as a list."""
    out: dict = {
        "image": torch.stack([b["image"] for b in batch]),
        "name": [b["name"] for b in batch],
        "index": torch.tensor([b["index"] for b in batch]),
    }
    if "depth" in batch[0]:
        depths = [b["depth"] for b in batch]
        same = all(d.shape == depths[0].shape for d in depths)
        out["depth"] = torch.stack(depths) if same else depths
    return out
