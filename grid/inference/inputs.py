"""What a trained model is run on: the items, and the data settings they are read with.

``depth-grid predict``, ``submit`` and ``evaluate`` share one rule. Given ``--experiment``,
a list file or data folder in the experiment's dataset layout (its ``pairs.txt``, a
``test_list.txt``, any list of the same format) is read with the experiment's format, crop and
depth scale, so predictions see what validation saw. A folder or file of one's own images is
predicted whole, at each image's size. Flags given explicitly (``--crop``, ``--depth-scale``,
``--format``) override both, and ``describe`` says what was applied. A pack (``depth-grid
pack``: its folder, or its ``s3://`` / ``gs://`` URI) is read with the layout it records, through
the node-local cache (``--cache-dir``, or ``$DEPTH_GRID_CACHE_DIR`` on a node); a flag that says
otherwise is refused, naming both, as ``run`` and ``check`` refuse it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from trainables.data import DEFAULT_LISTS, DataError, DatasetSpec, Item, index_dataset, sniff_format
from trainables.packed import is_pack

if TYPE_CHECKING:
    from grid.experiment.record import Experiment

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# A data folder's list, in this order of preference: predicting is usually for the test list.
FOLDER_LISTS = ("test_list.txt", DEFAULT_LISTS["pairs"], DEFAULT_LISTS["cil"])
DEFAULT_CACHE = Path("results/splits")  # a pack's node-local cache root without --cache-dir (as check's)


@dataclass(frozen=True)
class DataSettings:
    """How to read inputs: ``None`` fields were not given (explicit flags) or not recorded."""

    format: str | None = None
    crop: str | tuple[int, int, int, int] | None = None
    depth_scale: float | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> DataSettings:
        """The settings in an ``experiment.json`` ``data`` record (``grid.experiment.spec_record``)."""
        if not record:
            return cls()
        crop = record.get("crop")
        return cls(format=record.get("format"), crop=tuple(crop) if crop else "none",
                   depth_scale=record.get("depth_scale"))

    @classmethod
    def of(cls, experiment: Experiment | None) -> DataSettings:
        """The data settings an experiment recorded (none without one)."""
        return cls.from_record(experiment.record.get("data")) if experiment is not None else cls()


NO_SETTINGS = DataSettings()


@dataclass(frozen=True)
class Inputs:
    items: list[Item]
    spec: DatasetSpec
    describe: str  # e.g. "pairs list /d/val.txt; crop (45, 471, 41, 601) from the experiment"
    list_path: Path | None = None  # the list file read, None for one's own images


def find_list(source: Path) -> Path | None:
    """The list file ``source`` names or holds (a data folder), else None (plain images)."""
    if source.is_file() and source.suffix.lower() == ".txt":
        return source
    if source.is_dir():
        return next((source / n for n in FOLDER_LISTS if (source / n).is_file()), None)
    return None


def _pick(explicit: Any, experiment: Any, default: Any) -> tuple[Any, str]:
    if explicit is not None:
        return explicit, "given"
    if experiment is not None:
        return experiment, "from the experiment"
    return default, "default"


def dataset_inputs(list_path: Path, *, explicit: DataSettings, experiment: DataSettings,
                   require_depth: bool = False) -> Inputs:
    """A list file's items, with the experiment's settings when the list is in its layout."""
    layout = explicit.format or sniff_format(list_path)
    spec, note = with_settings(DatasetSpec(root=list_path.parent, format=layout, list_file=list_path.name),
                               explicit, experiment)
    return Inputs(index_dataset(spec, require_depth=require_depth), spec, f"{layout} list {list_path}; {note}",
                  spec.list_path)


def image_inputs(source: Path, *, crop: str | tuple[int, int, int, int] | None = None) -> Inputs:
    """One's own images (a folder or one file), named after their stems, whole unless ``crop``."""
    if source.is_file():
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{source}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a .txt list")
        paths = [source]
    elif source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise DataError(f"{source}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    else:
        raise DataError(f"{source}: input does not exist")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise DataError(f"{p}: same name as {stems[p.stem].name}; outputs would overwrite each other")
        stems[p.stem] = p
    items = [Item(name=p.name, rgb=p, depth=p.with_suffix(".npy"), depth_rel=p.stem + ".npy")
             for p in paths]
    spec = DatasetSpec(root=paths[0].parent, crop=crop)
    how = f"crop {spec.crop} (given)" if spec.crop else "whole, each at its own size"
    return Inputs(items, spec, f"{len(items)} image(s) from {source}, {how}")


def pack_inputs(source: str | Path, *, explicit: DataSettings = NO_SETTINGS,
                experiment: DataSettings = NO_SETTINGS, cache_dir: str | Path | None = None,
                list_file: str | None = None, require_depth: bool = False) -> Inputs:
    """A pack's items, read with its own layout (``explicit`` flags and a ``list_file`` that
    disagree with it are refused); a test pack (images only) unless ``require_depth``."""
    from trainables.packed import open_pack

    spec = open_pack(source, cache_dir or DEFAULT_CACHE, images_only=not require_depth, format=explicit.format,
                     crop=explicit.crop, depth_scale=explicit.depth_scale, list_file=list_file)
    note = f"crop {spec.crop or 'none'} (the pack's)"
    if spec.format == "pairs":
        note += f"; depth scale {spec.depth_scale:g} (the pack's)"
    theirs = experiment.crop if experiment.crop != "none" else None
    if experiment.format in (None, spec.format) and experiment.crop is not None and theirs != spec.crop:
        note += f" (the experiment read its data with crop {experiment.crop}: the pack keeps its own)"
    return Inputs(index_dataset(spec), spec, f"{spec.format} pack {spec.pack.uri} ({spec.list_file}); {note}")


def collect(source: str | Path, *, explicit: DataSettings = NO_SETTINGS,
            experiment: DataSettings = NO_SETTINGS, require_depth: bool = False,
            cache_dir: str | Path | None = None) -> Inputs:
    """Items to run on from a pack, a list file, a data folder, a folder of images or one image."""
    if is_pack(source):
        return pack_inputs(source, explicit=explicit, experiment=experiment, cache_dir=cache_dir,
                           require_depth=require_depth)
    source = Path(source).expanduser().resolve()
    list_path = find_list(source)
    if list_path is not None:
        return dataset_inputs(list_path, explicit=explicit, experiment=experiment,
                              require_depth=require_depth)
    return image_inputs(source, crop=explicit.crop)


def check_images(items: Iterable[Item]) -> None:
    """Each item's RGB file opens as an image. Only its header is read: a text file named
    ``.png`` fails here, before a model loads; a truncated image fails when it is decoded.
    A packed item is not opened: it was read whole when packed, and its bytes are checked
    against their CRC-32 when read."""
    for item in items:
        if item.member is not None:
            continue
        try:
            with Image.open(item.rgb):
                pass
        except UnidentifiedImageError as e:
            raise DataError(f"{item.rgb}: not an image file PIL can read") from e
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for a damaged header
            raise DataError(f"{item.rgb}: unreadable or corrupt image ({e})") from e


def with_settings(spec: DatasetSpec, explicit: DataSettings, experiment: DataSettings) -> tuple[DatasetSpec, str]:
    """``spec`` with its crop and depth scale chosen: explicit flags, else the experiment's when
    ``spec`` is in the experiment's layout, else none and 1.0. Also says what was applied."""
    # Another layout than the experiment's (competition test images for a model trained on NYU
    # pairs): the experiment's crop and scale describe other frames, so they do not apply.
    same = experiment.format in (None, spec.format)
    theirs = experiment if same else NO_SETTINGS
    crop, crop_from = _pick(explicit.crop, theirs.crop, "none")
    scale, scale_from = _pick(explicit.depth_scale, theirs.depth_scale, 1.0)
    spec = dataclasses.replace(spec, crop=crop, depth_scale=scale)
    note = f"crop {spec.crop or 'none'} ({crop_from})"
    if spec.format == "pairs":
        note += f"; depth scale {spec.depth_scale:g} ({scale_from})"
    if not same:
        note += f" (not the experiment's {experiment.format} layout: its crop and scale are not applied)"
    return spec, note
