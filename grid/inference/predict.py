"""Run a trained depth model on new images: float32 metres ``.npy`` plus a coloured PNG.

    depth-grid predict --experiment results/grid1 --input photos/ --out preds/
    depth-grid predict --checkpoint ckpt/checkpoint.pt --input data/test_list.txt --out preds/

The checkpoint carries the architecture (``arch_config``) and the training input size, so no
search space is needed. Each image is normalised, resized to the training size, predicted, and
the depth resized back (bilinear, in log-depth as the trainable's evaluation) to the image's
own resolution.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from grid.inference.checkpoints import checkpoint_file, input_size, load_checkpoint_model, use_tta
from grid.inference.inputs import NO_SETTINGS, DataSettings, Inputs, check_images, collect
from grid.inference.outputs import Reads, check_folder, check_outputs, recorded
from trainables.data import DataError, DatasetSpec, Item
from trainables.io import atomic_write

if TYPE_CHECKING:  # torch and the zoo load on first use: every check of the inputs and outputs runs first
    import torch

    from grid.experiment.record import Experiment
    from trainables.models import DepthModel

log = logging.getLogger(__name__)

CMAP = "viridis"


def collect_inputs(source: str | Path, *, explicit: DataSettings = NO_SETTINGS,
                   experiment: DataSettings = NO_SETTINGS,
                   cache_dir: str | Path | None = None) -> tuple[list[Item], DatasetSpec]:
    """Items to predict and how to read them (``grid.inference.inputs.collect``): a list file or data
    folder in the dataset's layout, a pack, a folder of images, or one image. Outputs are named
    after a list's depth entries, and after their own stems for plain images."""
    found = collect(source, explicit=explicit, experiment=experiment, cache_dir=cache_dir)
    return found.items, found.spec


def _native_size(item: Item, spec: DatasetSpec) -> tuple[int, int]:
    if spec.crop is not None:
        top, bottom, left, right = spec.crop
        return bottom - top, right - left
    source = item.rgb if item.member is None or spec.pack is None else io.BytesIO(spec.pack.read(item, "rgb"))
    try:
        with Image.open(source) as img:  # reads the header only
            w, h = img.size
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{item.rgb}: unreadable or corrupt image ({e})") from e
    return h, w


class _PredictSet:
    """Normalised image at the model's input size, plus its native size (a map-style dataset)."""

    def __init__(self, items: list[Item], spec: DatasetSpec, size: tuple[int, int] | None) -> None:
        from trainables.dataset import DepthDataset

        # size=None: DepthDataset keeps the native size; we resize here to know both.
        self.base = DepthDataset(items, spec, size=None, with_depth=False)
        self.size = size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, tuple[int, int] | str]:
        from trainables.dataset import resize_image

        try:
            image = self.base[i]["image"]  # (3, H, W)
        except DataError as e:  # raised in the main process by _collate's caller: one line, no worker traceback
            return None, i, str(e)
        native = tuple(image.shape[-2:])
        return (resize_image(image, self.size) if self.size else image), i, native


def _collate(batch: list) -> tuple[torch.Tensor | None, list[int], list]:
    import torch

    bad = next((b[2] for b in batch if b[0] is None), None)
    if bad is not None:
        return None, [b[1] for b in batch], [bad]
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch]


def _batches(input_sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped by input size (so they stack), in list order within a group."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(input_sizes):
        groups.setdefault(s, []).append(i)
    return [g[k:k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> None:
    """Refuse ``--device cuda`` where torch sees no CUDA device (before any model is loaded)."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available here")


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
    import torch
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # Only native-size input needs the sizes (read from headers) to group stackable images.
    sizes = [image_size] * len(items) if image_size else [_native_size(it, spec) for it in items]
    sampler = _batches(sizes, batch_size)
    loader = torch.utils.data.DataLoader(
        _PredictSet(items, spec, image_size), batch_sampler=sampler, collate_fn=_collate,
        num_workers=num_workers, pin_memory=torch.device(device).type == "cuda")
    model.eval()
    with torch.inference_mode(), tqdm(total=len(items), unit="img", disable=None if progress else True,
                                      desc="predict") as bar:  # a bar on a terminal only
        for images, indices, sizes in loader:
            if images is None:  # an image that could not be read (_PredictSet)
                raise DataError(sizes[0])
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
    import torch.nn.functional as F

    from trainables.recipe import forward_log_tta
    from trainables.vml import resolve_vml

    resolve_vml()  # before exp's first parallel call: see trainables.vml
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


def predict(checkpoint: str | Path, source: str | Path | Inputs, out: str | Path, *,
            experiment: Experiment | None = None, image_size: tuple[int, int] | None = None,
            batch_size: int = 8, device: str | None = None, num_workers: int = 0, png: bool = True,
            progress: bool = True, explicit: DataSettings = NO_SETTINGS, tta: bool | None = None,
            overwrite: bool = False, cache_dir: str | Path | None = None) -> list[Path]:
    """Predict every input image; return the ``.npy`` paths written (input order).

    The inputs are read and the outputs checked (``grid.inference.outputs``: never over an input,
    a foreign file only with ``overwrite``) before the model loads.

    Args:
        source: a list file, data folder, image folder or image, a pack (its folder or URI), or
            ``Inputs`` already collected.
        experiment: the experiment the checkpoint belongs to, if any: its input size stands in for
            a checkpoint that records none, and lists in its layout are read with its data settings.
        explicit: data settings given as flags; they override the experiment's (``grid.inference.inputs``).
        tta: flip test-time averaging; ``None``: as the trial validated (its ``tta`` setting).
        overwrite: replace existing files depth-grid did not write (never one it reads).
        cache_dir: a pack's node-local cache root (``--cache-dir``; default ``results/splits``).
    """
    checkpoint = checkpoint_file(checkpoint)
    found = source if isinstance(source, Inputs) else collect(
        source, explicit=explicit, experiment=DataSettings.of(experiment), cache_dir=cache_dir)
    reads = Reads().add_inputs(found).add_experiment(experiment).add_checkpoints([checkpoint])
    prediction_outputs(found.items, out, png=png, reads=reads, overwrite=overwrite)
    depths = checkpoint_depths(checkpoint, found, experiment=experiment, image_size=image_size,
                               batch_size=batch_size, device=device, num_workers=num_workers, progress=progress,
                               tta=tta)
    return write_predictions(depths, found.items, out, png=png)


def checkpoint_depths(checkpoint: Path, found: Inputs, *, experiment: Experiment | None = None,
                      image_size: tuple[int, int] | None = None, batch_size: int = 8, device: str | None = None,
                      num_workers: int = 0, progress: bool = True,
                      tta: bool | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """The images' headers and ``device`` checked, then the checkpoint's model loaded and run on
    every item at its input size (``input_size``) with its TTA (``use_tta``): what predict and
    submit share once their outputs are checked."""
    check_images(found.items)
    check_device(device)
    device = device or default_device()
    model, info = load_checkpoint_model(checkpoint, device)
    size = input_size(info, image_size, experiment)
    log.info("inputs: %s; model input %dx%d", found.describe, *size)
    return predict_items(model, found.items, found.spec, image_size=size, batch_size=batch_size, device=device,
                         num_workers=num_workers, progress=progress, tta=use_tta(info, tta))


def prediction_outputs(items: list[Item], out: str | Path, *, png: bool = True, reads: Reads | None = None,
                       overwrite: bool = False) -> list[Path]:
    """The files predicting ``items`` into ``out`` will write (``out/<pred_name>``, and its
    ``.png``), checked by the output rule before any work (``grid.inference.outputs``)."""
    folder = check_folder(out)
    names = [folder / it.pred_name for it in items]
    return check_outputs([*names, *(n.with_suffix(".png") for n in names if png)], reads, overwrite=overwrite)


def write_predictions(depths: Iterable[tuple[int, np.ndarray]], items: list[Item], out: str | Path, *,
                      png: bool = True, title_suffix: str = "") -> list[Path]:
    """Save each ``(index, depth)`` as ``out/<item's pred_name>`` (``.npy``, and a ``.png`` when
    ``png``); return the paths written, in ``items`` order whatever order the depths came in."""
    out = Path(out).expanduser()
    written: list[Path | None] = [None] * len(items)
    with recorded() as files:  # depth-grid's own outputs: a re-run may replace them
        for i, depth in depths:
            npy = out / items[i].pred_name
            save_depth(depth, npy)
            files.append(npy)
            if png:
                write_depth_png(depth, npy.with_suffix(".png"), title=items[i].name + title_suffix)
                files.append(npy.with_suffix(".png"))
            written[i] = npy
    return [p for p in written if p is not None]
