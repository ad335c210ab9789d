"""The validation metrics in torch (``trainables.metrics_torch``) against the numpy reference
(``trainables.metrics``) on real NYU frames, under every protocol and alignment validation uses."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.config import TrialConfig
from trainables.data import EIGEN_CROP, DatasetSpec, index_dataset, load_depth
from trainables.loop import eval_loader, evaluate
from trainables.metrics import METRICS, MetricAccumulator, compute_metrics
from trainables.metrics_torch import DeviceMetricAccumulator, median_selected, median_sorted
from trainables.protocols import Scoring

N_FRAMES = 2
SCORINGS = [  # (protocol, align, align_space): each protocol plainly, then every alignment
    *((p, "none", "depth") for p in ("none", "nyu", "kitti_eigen", "kitti_garg")),
    ("nyu", "median", "depth"), ("none", "median", "depth"),
    *(("nyu", "lstsq", s) for s in ("depth", "inverse", "log")), ("none", "lstsq", "inverse"),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Full-frame elementwise maps on one thread: on 2 busy cores torch's two threads wait on each
    other (this file took 6 s idle, 34 s beside other jobs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frames(nyu_dir: Path) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """The first real NYU frames in full (480x640) and read with ``--crop eigen`` (426x560), each
    with a model-like prediction."""
    full = DatasetSpec.detect(nyu_dir, depth_scale=25.5)
    cropped = DatasetSpec.detect(nyu_dir, depth_scale=25.5, crop="eigen")
    out = {"full": [load_depth(it, full) for it in index_dataset(full)[:N_FRAMES]],
           "eigen": [load_depth(it, cropped) for it in index_dataset(cropped)[:N_FRAMES]]}
    return {which: (targets, [model_like(t, i) for i, t in enumerate(targets)]) for which, targets in out.items()}


def model_like(target: np.ndarray, i: int) -> np.ndarray:
    """A prediction like a trained model's: smooth (the target's log, holes filled, blurred),
    a per-image scale and shift off, a slow ramp of error and some noise; defined everywhere."""
    valid = target > 1e-6
    log_t = np.where(valid, np.log(np.where(valid, target, 1.0)), np.log(np.median(target[valid])))
    blurred = F.avg_pool2d(torch.from_numpy(log_t)[None, None], 15, stride=1, padding=7,
                           count_include_pad=False)[0, 0].numpy()
    rng = np.random.default_rng(i)
    ramp = np.linspace(-0.15, 0.15, target.shape[1])[None, :]
    pred = np.exp(blurred + ramp + rng.normal(0, 0.05, target.shape)) * (0.8 + 0.15 * i) + 0.1 * i
    return pred.astype(np.float32)  # what the model's upsampled prediction is


@pytest.mark.parametrize("pooled", [False, True], ids=["image", "pooled"])
@pytest.mark.parametrize(("protocol", "align", "space"), SCORINGS)
def test_torch_metrics_equal_the_numpy_reference_on_real_frames(frames, protocol, align, space, pooled) -> None:
    scorings = [("full", Scoring(protocol, align, space))]
    if protocol == "nyu":  # data read already cropped to the protocol's box: scored whole
        scorings.append(("eigen", Scoring(protocol, align, space, data_crop=EIGEN_CROP)))
    for which, scoring in scorings:
        targets, preds = frames[which]
        ref, acc = MetricAccumulator(scoring, pooled=pooled), DeviceMetricAccumulator(scoring, pooled=pooled)
        for p, t in zip(preds, targets, strict=True):
            ref.update(p, t)
            acc.update(torch.from_numpy(p)[None, None], torch.from_numpy(t)[None, None])  # as evaluate feeds it
        got, want = acc.result(), ref.result()
        assert acc.count == ref.count == N_FRAMES
        for name in METRICS:
            assert got[name] == pytest.approx(want[name], rel=1e-6, abs=1e-9), (which, name)
        if not pooled:
            for row, ref_row in zip(acc.rows, ref.rows, strict=True):
                assert row == pytest.approx(ref_row, rel=1e-6, abs=1e-9)
        # the scoring moves the numbers on full frames (a crop or alignment the torch path ignored
        # would show; NYU's depth is all inside the nyu cap, so data read cropped is scored plainly)
        if which == "full" and (protocol, align) != ("none", "none"):
            assert got["abs_rel"] != pytest.approx(compute_metrics(preds, targets)["abs_rel"], rel=1e-3)


def test_skipped_images_nan_predictions_and_bad_inputs() -> None:
    rng = np.random.default_rng(0)
    t = rng.uniform(0.5, 5.0, (3, 6, 7))
    t[1] = 0.0  # no valid pixel: skipped, as the reference skips it
    p = t * rng.uniform(0.8, 1.2, t.shape)
    p[2, 0, 0] = np.nan  # a non-finite prediction is not hidden
    acc = DeviceMetricAccumulator(Scoring(align="median"))
    acc.update(torch.from_numpy(p), torch.from_numpy(t))
    rows = acc.image_rows()
    assert acc.count == 2 and rows[1] is None and math.isnan(rows[2]["si_rmse"])
    ref = MetricAccumulator(Scoring(align="median"))
    ref.update(p, t)
    assert rows[2] == pytest.approx(ref.rows[1], nan_ok=True)  # NaN where numpy has NaN, else equal
    assert rows[0] == pytest.approx(ref.rows[0], rel=1e-12)
    with pytest.raises(ValueError, match="no scored image"):
        DeviceMetricAccumulator().result()
    with pytest.raises(ValueError, match="differ in shape"):
        DeviceMetricAccumulator().update(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        DeviceMetricAccumulator().update(torch.ones(2, 3, 3), torch.ones(1, 3, 3))


@pytest.mark.parametrize("count", [0, 1, 2, 7, 10])
def test_both_medians_are_numpys(count: int) -> None:
    """The CPU's selection and the GPU's sort (run here on the CPU: the same ops) against np.median,
    odd and even counts, a NaN, and no valid pixel at all."""
    rng = np.random.default_rng(count)
    x = torch.from_numpy(rng.uniform(0.1, 9.0, (4, 5)))
    valid = torch.zeros(20, dtype=torch.bool)
    valid[rng.choice(20, count, replace=False)] = True
    valid = valid.view(4, 5)
    want = np.median(x.numpy()[valid.numpy()]) if count else math.nan
    n = valid.sum()
    for got in (median_selected(x, valid), median_sorted(x, valid, n)):
        assert float(got) == pytest.approx(want, rel=1e-15, nan_ok=True)
    if count:
        x[valid] = torch.where(torch.arange(count) == 0, torch.nan, x[valid])
        assert math.isnan(median_selected(x, valid)) and math.isnan(median_sorted(x, valid, n))


class Smooth(torch.nn.Module):
    """A fixed, model-like log-depth: a vertical ramp (near at the bottom, as indoor frames are)."""

    def forward_log(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, h, w) -> (B, 1, h, w)
        h, w = image.shape[-2:]
        rows = torch.linspace(1.6, 0.3, h).view(1, 1, h, 1).expand(image.shape[0], 1, h, w)
        return rows + 0.05 * image.mean(1, keepdim=True)


def test_validation_on_real_frames_equals_the_numpy_path(nyu_dir: Path) -> None:
    """``trainables.loop.evaluate`` (torch, the prediction left on its device) scores as the numpy
    accumulator does on the same upsampled predictions."""
    spec = DatasetSpec.detect(nyu_dir, depth_scale=25.5)
    items = index_dataset(spec)[:N_FRAMES]
    cfg = TrialConfig(arch="smooth", image_size=(48, 64), batch_size=2, num_workers=0, protocol="nyu",
                      align="lstsq", align_space="inverse")
    loader = eval_loader(cfg, items, spec)
    got, _ = evaluate(Smooth(), loader, cfg, torch.device("cpu"))
    ref = MetricAccumulator(Scoring("nyu", "lstsq", "inverse"))
    for sample in loader.dataset:
        target = load_depth(items[sample["index"]], spec)
        with torch.no_grad():
            log_pred = Smooth().forward_log(sample["image"][None])
        ref.update(F.interpolate(log_pred, size=target.shape, mode="bilinear", align_corners=False).exp()[0, 0].numpy(),
                   target)
    for name, value in ref.result().items():
        assert got[name] == pytest.approx(value, rel=1e-6), name
