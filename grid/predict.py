"""Run a trained depth model on new images: float32 metres ``.npy`` plus a coloured PNG.

    python -m grid.predict --experiment results/grid1 --input photos/ --out preds/
    python -m grid.predict --checkpoint ckpt/checkpoint.pt --input data/test_list.txt --out preds/

The checkpoint carries the architecture (``arch_config``) and the training input size, so no
search space is needed. Each image is normalised, resized to the training size, predicted, and
the depth resized back (bilinear, in log-depth as the trainable's evaluation) to the image's
own resolution.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from grid.checkpoints import CheckpointError, load_checkpoint_model, resolve_checkpoint  # noqa: F401  (re-exported)
from grid.cli import parse_size, prog_name
from grid.inputs import IMAGE_SUFFIXES, NO_SETTINGS, DataSettings, collect  # noqa: F401  (IMAGE_SUFFIXES re-exported)
from grid.leaderboard import LeaderboardError, read_experiment
from trainables.data import DEFAULT_SIZE, DataError, DatasetSpec, Item
from trainables.dataset import DepthDataset, resize_image
from trainables.io import atomic_write

if TYPE_CHECKING:  # importing the zoo loads every architecture's library; only for hints here
    from trainables.models import DepthModel

log = logging.getLogger(__name__)

CMAP = "viridis"
def collect_inputs(source: str | Path, *, explicit: DataSettings = NO_SETTINGS,
                   experiment: DataSettings = NO_SETTINGS) -> tuple[list[Item], DatasetSpec]:
    """Items to predict and how to read them (``grid.inputs.collect``): a list file or data
    folder in the dataset's layout, a folder of images, or one image. Outputs are named after
    a list's depth entries, and after their own stems for plain images."""
    found = collect(source, explicit=explicit, experiment=experiment)
    return found.items, found.spec


def _native_size(item: Item, spec: DatasetSpec) -> tuple[int, int]:
    if spec.crop is not None:
        top, bottom, left, right = spec.crop
        return bottom - top, right - left
    try:
        with Image.open(item.rgb) as img:  # reads the header only
            w, h = img.size
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{item.rgb}: unreadable or corrupt image ({e})") from e
    return h, w


class _PredictSet(torch.utils.data.Dataset):
    """Normalised image at the model's input size, plus its native size."""

    def __init__(self, items: list[Item], spec: DatasetSpec, size: tuple[int, int] | None) -> None:
        # size=None: DepthDataset keeps the native size; we resize here to know both.
        self.base = DepthDataset(items, spec, size=None, with_depth=False)
        self.size = size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, tuple[int, int]]:
        image = self.base[i]["image"]  # (3, H, W)
        native = tuple(image.shape[-2:])
        return (resize_image(image, self.size) if self.size else image), i, native


def _collate(batch: list) -> tuple[torch.Tensor, list[int], list[tuple[int, int]]]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch]


def _batches(input_sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped by input size (so they stack), in list order within a group."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(input_sizes):
        groups.setdefault(s, []).append(i)
    return [g[k:k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def predict_items(model: DepthModel, items: list[Item], spec: DatasetSpec, *,
                  image_size: tuple[int, int] | None, batch_size: int = 8,
                  device: str | torch.device = "cpu", num_workers: int = 0,
                  progress: bool = True, tta: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index into items, depth float32 (H, W) metres at the image's own size)``.

    Args:
        image_size: model input ``(h, w)``; ``None`` feeds each image at its native size.
        batch_size: images per forward pass (same-size images are batched together).
        tta: average each prediction with the mirrored prediction of the mirrored image.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # Only native-size input needs the sizes (read from headers) to group stackable images.
    sizes = [image_size] * len(items) if image_size else [_native_size(it, spec) for it in items]
    sampler = _batches(sizes, batch_size)
    loader = torch.utils.data.DataLoader(
        _PredictSet(items, spec, image_size), batch_sampler=sampler, collate_fn=_collate,
        num_workers=num_workers, pin_memory=torch.device(device).type == "cuda")
    model.eval()
    with torch.inference_mode(), tqdm(total=len(items), unit="img", disable=not progress,
                                      desc="predict") as bar:
        for images, indices, sizes in loader:
            yield from zip(indices, depth_maps(model, images.to(device, non_blocking=True), sizes, tta=tta),
                           strict=True)
            bar.update(len(indices))


def depth_maps(model: torch.nn.Module, images: torch.Tensor, sizes: Sequence[tuple[int, int]],
               tta: bool = False) -> list[np.ndarray]:
    """Depth, float32 (H, W) metres, of each normalised image of a batch at its own ``sizes``.

    The log-depth is resized (bilinear, pixel centres aligned), as the trainable's evaluation
    does, so that predicting the validation images reproduces the leaderboard's metrics.
    ``tta``: flip test-time averaging in log-depth (``trainables.recipe.forward_log_tta``).
    """
    from trainables.recipe import forward_log_tta

    log_depth = forward_log_tta(model, images, tta).float()  # (B, 1, h, w)
    return [F.interpolate(d[None], size=hw, mode="bilinear", align_corners=False).exp()[0, 0]
            .cpu().numpy().astype(np.float32, copy=False)
            for d, hw in zip(log_depth, sizes, strict=True)]


def write_depth_png(depth: np.ndarray, path: str | Path, title: str | None = None) -> None:
    """A colour-mapped picture of ``depth`` (metres) with a colour bar."""
    from matplotlib.figure import Figure  # object API: no pyplot global state, Agg by default

    h, w = depth.shape
    scale = max(1.0, 320.0 / max(h, w))  # tiny images still get a readable bar
    fig = Figure(figsize=(w * scale / 100 + 1.2, h * scale / 100 + (0.3 if title else 0.1)), dpi=100)
    ax = fig.add_axes((0.02, 0.02, 0.72, 0.96 if not title else 0.88))
    im = ax.imshow(depth, cmap=CMAP, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    cax = fig.add_axes((0.78, 0.1, 0.05, 0.8))
    fig.colorbar(im, cax=cax).set_label("depth (m)")
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")


def save_depth(depth: np.ndarray, path: str | Path) -> None:
    with atomic_write(path, "wb") as fh:
        np.save(fh, depth.astype(np.float32, copy=False))


def input_size(info: dict, override: tuple[int, int] | None = None,
               fallback: tuple[int, int] | None = None) -> tuple[int, int]:
    """The model input size: ``override``, else the checkpoint's, else ``fallback``, else 426x560."""
    size = override or info["image_size"] or fallback
    if size is None:
        size = DEFAULT_SIZE
        log.warning("%s records no image_size; using %dx%d (pass --image-size)", info["path"], *size)
    return size


def use_tta(info: dict, override: bool | None = None) -> bool:
    """Flip TTA: ``override`` (``--tta`` / ``--no-tta``), else what the trial validated with."""
    tta = bool(info["trial_config"].get("tta", False)) if override is None else override
    log.info("flip test-time averaging: %s (%s)", "on" if tta else "off",
             "--tta/--no-tta" if override is not None else "the trial's setting")
    return tta


def predict(checkpoint: str | Path, source: str | Path, out: str | Path, *,
            image_size: tuple[int, int] | None = None, batch_size: int = 8,
            device: str | None = None, num_workers: int = 0, png: bool = True,
            progress: bool = True, fallback_size: tuple[int, int] | None = None,
            explicit: DataSettings = NO_SETTINGS, experiment: DataSettings = NO_SETTINGS,
            tta: bool | None = None) -> list[Path]:
    """Predict every input image; return the ``.npy`` paths written (input order).
    ``tta``: flip test-time averaging; ``None``: as the trial validated (its ``tta`` setting).

    ``explicit`` / ``experiment``: data settings given as flags / recorded by the experiment
    (see ``grid.inputs``); what was applied is logged.
    """
    device = device or default_device()
    model, info = load_checkpoint_model(checkpoint, device)
    size = input_size(info, image_size, fallback_size)
    found = collect(source, explicit=explicit, experiment=experiment)
    log.info("inputs: %s; model input %dx%d", found.describe, *size)
    depths = predict_items(model, found.items, found.spec, image_size=size, batch_size=batch_size, device=device,
                           num_workers=num_workers, progress=progress, tta=use_tta(info, tta))
    return write_predictions(depths, found.items, out, png=png)


def write_predictions(depths: Iterable[tuple[int, np.ndarray]], items: list[Item], out: str | Path, *,
                      png: bool = True, title_suffix: str = "") -> list[Path]:
    """Save each ``(index, depth)`` as ``out/<item's pred_name>`` (``.npy``, and a ``.png`` when
    ``png``); return the paths written, in ``items`` order whatever order the depths came in."""
    out = Path(out).expanduser()
    written: list[Path | None] = [None] * len(items)
    for i, depth in depths:
        npy = out / items[i].pred_name
        save_depth(depth, npy)
        if png:
            write_depth_png(depth, npy.with_suffix(".png"), title=items[i].name + title_suffix)
        written[i] = npy
    return [p for p in written if p is not None]


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint | --experiment``, ``--batch-size``, ``--image-size``, ``--device``, ``--workers``."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="a trial's checkpoint.pt")
    which.add_argument("--experiment", type=Path, help="experiment folder: use its best trial")
    parser.add_argument("--ensemble", type=int, metavar="K", help="with --experiment: average the "
                        "log-depth of its best K finished trials, each at its own input size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=parse_size, default=None, metavar="HxW",
                        help="model input size (default: the checkpoint's training size)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="default: cuda when available")
    parser.add_argument("--workers", type=int, default=2, help="image loading processes")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test-time averaging (default: as the trial validated, its tta setting)")
    parser.add_argument("--crop", choices=["eigen", "none"], default=None,
                        help="crop inputs (default: the experiment's for lists in its layout, else none)")
    parser.add_argument("--format", choices=["cil", "pairs"], default=None,
                        help="layout of a list file (default: detected)")


def check_device(device: str | None) -> None:
    """Refuse ``--device cuda`` where torch sees no CUDA device (before any model is loaded)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")


def model_from_args(args: argparse.Namespace) -> tuple[Path, tuple[int, int] | None]:
    """The checkpoint path and the experiment's image size (a fallback) from parsed args."""
    check_device(args.device)
    ckpt = resolve_checkpoint(args.checkpoint, args.experiment)
    size = read_experiment(args.experiment).get("image_size") if args.experiment else None
    return ckpt, (int(size[0]), int(size[1])) if size else None


def settings_from_args(args: argparse.Namespace) -> tuple[DataSettings, DataSettings]:
    """(explicit flags, the experiment's recorded data settings) from parsed args."""
    explicit = DataSettings(format=args.format, crop=args.crop,
                            depth_scale=getattr(args, "depth_scale", None))
    recorded = read_experiment(args.experiment).get("data") if args.experiment else None
    return explicit, DataSettings.from_record(recorded)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog_name("python -m grid.predict"), description=__doc__.split("\n")[0])
    add_model_args(parser)
    parser.add_argument("--input", required=True, help="image folder, image file, or list file")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--no-png", action="store_true", help="write only the .npy files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.ensemble:
        from grid.ensemble import predict_main

        return predict_main(args)
    try:
        ckpt, fallback = model_from_args(args)
        explicit, experiment = settings_from_args(args)
        paths = predict(ckpt, args.input, args.out, image_size=args.image_size,
                        batch_size=args.batch_size, device=args.device, num_workers=args.workers,
                        png=not args.no_png, fallback_size=fallback, explicit=explicit,
                        experiment=experiment, tta=args.tta)
    except (ValueError, FileNotFoundError, LeaderboardError) as e:  # incl. CheckpointError, DataError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(paths)} depth maps from {ckpt} written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
