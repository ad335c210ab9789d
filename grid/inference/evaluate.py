"""Score a folder of depth predictions against a dataset's ground truth.

``depth-grid evaluate --pred DIR --data DIR`` reads one float ``.npy`` per list item, in
metres, at ``DIR/<depth entry with suffix .npy>`` (``Item.pred_name``: ``x_depth.npy`` for the
competition layout, ``depth/0001.npy`` for pairs), and prints every metric of
``trainables.metrics`` averaged per image. Missing, extra, corrupt or wrongly sized predictions
are reported all at once, naming the items (one ``PredictionError``).

A prediction must have the target's size after ``--crop``; a prediction of the full uncropped
frame is cropped like the target. ``--resize`` instead resizes any prediction bilinearly to the
target's size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from grid.inference.outputs import Reads, check_outputs, marked
from trainables.data import DataError, DatasetSpec, Item, index_dataset, load_depth
from trainables.io import write_json
from trainables.protocols import MEANS, Scoring, check_choice

if TYPE_CHECKING:
    from grid.experiment.record import Experiment

MAX_LISTED = 20  # problems printed before "... and N more"


class PredictionError(DataError):
    """The predictions were read and some are missing, extra, corrupt or wrongly sized: the
    evaluation ran and failed (exit 1), unlike a folder or list that cannot be read (exit 2)."""


def _problem_list(title: str, problems: list[str]) -> str:
    shown = problems[:MAX_LISTED]
    more = f"; ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{title}: " + "; ".join(shown) + more


def check_files(pred_dir: Path, items: list[Item]) -> list[str]:
    """Missing predictions and ``.npy`` files under ``pred_dir`` that belong to no item."""
    expected = {it.pred_name: it for it in items}
    missing = [f"{it.name}: prediction {pred_dir / name} not found"
               for name, it in expected.items() if not (pred_dir / name).is_file()]
    present = {p.relative_to(pred_dir).as_posix() for p in pred_dir.rglob("*.npy")}
    extra = [f"{pred_dir / name}: extra prediction, not in the dataset list"
             for name in sorted(present - {Path(n).as_posix() for n in expected})]
    return missing + extra


def load_prediction(path: Path) -> np.ndarray:
    """A prediction file as float32 (H, W); ``DataError`` naming the file when unusable."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: corrupt or unreadable .npy ({e})") from e
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.squeeze(0) if arr.shape[0] == 1 else arr.squeeze(-1)
    real = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    if arr.ndim != 2 or not real:
        raise DataError(f"{path}: prediction must be a 2-D array of real numbers, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float32)
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise DataError(f"{path}: prediction has {bad} non-finite values (NaN or inf)")
    return arr


def match_size(pred: np.ndarray, target: np.ndarray, item: Item, spec: DatasetSpec, *,
               resize: bool, path: Path) -> np.ndarray:
    """The prediction at the target's size: unchanged, cropped like the target, or resized."""
    if pred.shape == target.shape:
        return pred
    if spec.crop is not None:
        top, bottom, left, right = spec.crop
        full = load_depth(item, dataclasses.replace(spec, crop=None)).shape
        if pred.shape == full:  # a full-frame prediction: score the same region as the target
            return pred[top:bottom, left:right]
    if resize:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(pred)[None, None]  # (1, 1, h, w)
        return F.interpolate(t, size=target.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    raise DataError(f"{path}: prediction is {pred.shape[0]}x{pred.shape[1]} but the target of "
                    f"{item.name} is {target.shape[0]}x{target.shape[1]} (pass --resize to resize)")


def evaluate(pred_dir: str | Path, spec: DatasetSpec, *, resize: bool = False, out: str | Path | None = None,
             overwrite: bool = False, experiment: Experiment | None = None, protocol: str = "none",
             align: str = "none", align_space: str = "depth", mean: str = "image") -> dict:
    """Metrics of the predictions in ``pred_dir`` for every item of ``spec``'s list.

    Returns ``{<metric>: float for every name in METRICS, "count": images scored,
    "skipped": images without a valid target pixel, "protocol", "align", "mean"}``. Raises
    ``DataError`` listing every problem (missing, extra, corrupt or wrongly sized predictions).

    Args:
        protocol: a preset of ``trainables.protocols.PROTOCOLS`` (crop and depth cap; ``none``:
            every target > 1e-6, no cap).
        align: ``none``, ``median`` or ``lstsq`` (scale and shift in ``align_space``: ``depth``,
            ``inverse`` or ``log``), fitted per image.
        mean: ``image`` (each metric per image, then averaged) or ``pooled`` (over all pixels).
        out: also write the result there as JSON (atomically, marked ``"written_by": "depth-grid
            evaluate"``), checked before anything is scored by the output rule
            (``grid.inference.outputs``: never over a prediction, the dataset's files or
            ``experiment``'s records; a file depth-grid did not write only with ``overwrite``).
    """
    scoring = Scoring(protocol, align, align_space, data_crop=spec.crop)
    check_choice("--mean", mean, MEANS)
    scoring.protocol.cropped_already(spec.crop)  # a crop the protocol cannot work on: say so first
    pred_dir = Path(pred_dir).expanduser().resolve()
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder does not exist")
    items = index_dataset(spec)
    if out is not None:
        out = json_output(out, pred_dir, items, spec, experiment=experiment, overwrite=overwrite)
    from trainables.metrics import MetricAccumulator  # torch: after the checks

    problems = check_files(pred_dir, items)
    acc = MetricAccumulator(scoring, pooled=mean == "pooled")
    skipped = 0
    for item in tqdm(items, unit="img", desc="evaluate", disable=None):  # a bar on a terminal only
        path = pred_dir / item.pred_name
        if not path.is_file():
            continue  # already reported as missing
        try:
            target = load_depth(item, spec)
            pred = match_size(load_prediction(path), target, item, spec, resize=resize, path=path)
        except DataError as e:
            problems.append(str(e))
            continue
        before = acc.count
        acc.update(pred, target)
        skipped += acc.count == before
    if problems:
        raise PredictionError(_problem_list(f"{len(problems)} problem(s) with the predictions in {pred_dir}",
                                      problems))
    if acc.count == 0:
        raise DataError(f"{spec.list_path}: no item has a valid ground-truth pixel; nothing to score")
    result = {**acc.result(), "count": acc.count, "skipped": skipped, **scoring.record(), "mean": mean}
    if out is not None:  # marked as depth-grid's own, so that a re-run may replace it
        write_json(out, marked(result, "evaluate"))
    return result


def experiment_protocol(experiment: Experiment | None) -> str | None:
    """The protocol an experiment's trials validated under (``--protocol`` / ``--set protocol=``,
    as its resume signature records it), ``None`` when it set none or several."""
    if experiment is None:
        return None
    studies = experiment.record.get("signature", {}).get("studies", [])
    found = [space.get("protocol", "none") for _, space in studies if isinstance(space, dict)]
    if not found or not all(isinstance(p, str) and p == found[0] for p in found):
        return None  # none recorded, several, or searched over
    return found[0]


def json_output(path: str | Path, pred_dir: Path, items: list[Item], spec: DatasetSpec, *,
                experiment: Experiment | None = None, overwrite: bool = False) -> Path:
    """``--json PATH``, checked by the output rule: not over a prediction, the dataset's files or
    the experiment's records, nor a foreign file without ``overwrite``."""
    reads = Reads().add_experiment(experiment).add_folder(spec.root, "the dataset folder")
    reads.add_files((f for it in items for f in (it.rgb, it.depth)), "a dataset file").add_files(
        [spec.list_path], "the list file")
    reads.add_folder(pred_dir, "the prediction folder").add_files(pred_dir.rglob("*.npy"), "a prediction")
    return check_outputs([path], reads, overwrite=overwrite, option="--json")[0]


def format_table(result: dict) -> str:
    """The metrics as an aligned two-column text table."""
    from trainables.metrics import HIGHER_IS_BETTER, METRICS

    lines = [f"{'metric':<10} {'value':>10}"]
    for name in METRICS:
        better = "higher" if name in HIGHER_IS_BETTER else "lower"
        lines.append(f"{name:<10} {result[name]:>10.4f}  ({better} is better)")
    lines.append(f"{'images':<10} {result['count']:>10d}")
    if "mean" in result:  # how the numbers above were taken
        how = "per image, then averaged over images" if result["mean"] == "image" else "over all pixels pooled"
        aligned = f"; alignment {result['align']}" + (f" in {result['align_space']} space" if "align_space" in result
                                                     else "")
        lines.append(f"{'scored':<10} protocol {result['protocol']}{aligned}; metrics {how}")
    if result.get("skipped"):
        lines.append(f"{'skipped':<10} {result['skipped']:>10d}  (no valid ground truth)")
    return "\n".join(lines)
