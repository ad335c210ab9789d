"""Depth metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainables.metrics import METRICS, MetricAccumulator, compute_metrics, si_rmse

NAMES = ["si_rmse", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3", "silog"]


def test_metric_names_and_order() -> None:
    assert list(METRICS) == NAMES
    assert list(compute_metrics(np.ones((2, 2)), np.ones((2, 2)))) == NAMES


def test_every_metric_by_hand() -> None:
    pred = np.array([[1.0, 2.0], [3.0, 8.0]])
    target = np.array([[1.0, 1.0], [2.0, 4.0]])
    # ratios p/t = 1, 2, 1.5, 2; errors p - t = 0, 1, 1, 4
    a, b = math.log(2.0), math.log(1.5)
    d = [0.0, a, b, a]
    mean_d = (2 * a + b) / 4
    expected = {
        "si_rmse": math.sqrt(sum((x - mean_d) ** 2 for x in d) / 4),
        "abs_rel": (0 / 1 + 1 / 1 + 1 / 2 + 4 / 4) / 4,  # 0.625
        "sq_rel": (0 / 1 + 1 / 1 + 1 / 2 + 16 / 4) / 4,  # 1.375
        "rmse": math.sqrt((0 + 1 + 1 + 16) / 4),
        "rmse_log": math.sqrt((2 * a * a + b * b) / 4),
        "log10": (2 * math.log10(2) + math.log10(1.5)) / 4,
        "delta1": 1 / 4,  # only ratio 1 < 1.25
        "delta2": 2 / 4,  # 1 and 1.5 < 1.5625
        "delta3": 2 / 4,  # 2 is not < 1.953125
        "silog": 100 * math.sqrt((2 * a * a + b * b) / 4 - mean_d**2),
    }
    got = compute_metrics(pred, target)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name
    assert si_rmse(pred, target) == pytest.approx(expected["si_rmse"], rel=1e-12)


def test_si_rmse_simple_case() -> None:
    # d = [0, 1]: mean 0.5, deviations +-0.5 -> sqrt(0.25) = 0.5 (natural log).
    assert si_rmse(np.array([[1.0, math.e]]), np.array([[1.0, 1.0]])) == pytest.approx(0.5)


def test_predictions_are_clamped_to_1e6() -> None:
    # 0 and -3 become 1e-6: d = [log 1e-6, log 1e-6, 0, 0] -> si_rmse = |log 1e-6| / 2.
    pred = np.array([[0.0, -3.0, 1.0, 1.0]])
    assert si_rmse(pred, np.ones((1, 4))) == pytest.approx(abs(math.log(1e-6)) / 2)
    assert compute_metrics(pred, np.ones((1, 4)))["abs_rel"] == pytest.approx((2 * (1 - 1e-6)) / 4)


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_si_rmse_zero_under_global_scale(scale: float, seed: int) -> None:
    target = np.random.default_rng(seed).uniform(0.1, 10.0, (3, 5, 6))
    target[0, 0, :3] = 0.0  # invalid pixels get a prediction of 0, which must not matter
    pred = scale * target
    assert si_rmse(pred, target) == pytest.approx(0.0, abs=1e-7)
    metrics = compute_metrics(pred, target)
    assert metrics["si_rmse"] == pytest.approx(0.0, abs=1e-7)
    assert metrics["abs_rel"] == pytest.approx(abs(scale - 1), rel=1e-9, abs=1e-12)
    assert metrics["rmse_log"] == pytest.approx(abs(math.log(scale)), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf"), float("-inf"), -2.0, 1e-6])
def test_invalid_target_pixels_are_masked(bad: float) -> None:
    pred = np.array([[1.0, 2.0, 3.0, 8.0, 50.0]])
    target = np.array([[1.0, 1.0, 2.0, 4.0, bad]])
    assert compute_metrics(pred, target) == pytest.approx(compute_metrics(pred[:, :4], target[:, :4]))


def test_per_image_versus_pooled() -> None:
    # Image A (2x2): pred = 2 * target, so d = log 2 everywhere; image B (1x3): pred = target.
    ta = np.array([[1.0, 2.0], [3.0, 4.0]])
    tb = np.array([[1.0, 5.0, 9.0]])
    pred, target = [2 * ta, tb.copy()], [ta, tb]
    a = math.log(2.0)
    per_image = compute_metrics(pred, target)
    pooled = compute_metrics(pred, target, pooled=True)
    # Per image: each image is a pure scale error -> si_rmse 0 for both.
    assert per_image["si_rmse"] == pytest.approx(0.0, abs=1e-12)
    # Pooled: d = [a]*4 + [0]*3, mean 4a/7, variance (4/7)(3/7) a^2.
    assert pooled["si_rmse"] == pytest.approx(a * math.sqrt(12) / 7, rel=1e-12)
    # abs_rel: A = 1, B = 0 -> 0.5 per image; 4 of 7 pixels have error 1 -> 4/7 pooled.
    assert per_image["abs_rel"] == pytest.approx(0.5)
    assert pooled["abs_rel"] == pytest.approx(4 / 7)
    # rmse: errors in A equal the targets (1, 2, 3, 4): sqrt(30/4) and 0, versus sqrt(30/7).
    assert per_image["rmse"] == pytest.approx(math.sqrt(30 / 4) / 2)
    assert pooled["rmse"] == pytest.approx(math.sqrt(30 / 7))
    assert per_image["delta1"] == pytest.approx(0.5)
    assert pooled["delta1"] == pytest.approx(3 / 7)


def test_input_forms_agree() -> None:
    rng = np.random.default_rng(1)
    target = rng.uniform(0.5, 5.0, (2, 4, 5))
    pred = target * rng.uniform(0.8, 1.2, (2, 4, 5))
    ref = compute_metrics(pred, target)
    forms = [
        (pred[:, None], target[:, None]),  # (B, 1, H, W) numpy
        (torch.from_numpy(pred).float(), torch.from_numpy(target).float()),  # (B, H, W) float32
        (torch.from_numpy(pred)[:, None].requires_grad_(), torch.from_numpy(target)[:, None]),
        (list(pred), list(target)),  # list of (H, W)
        ([p[None] for p in pred], [t[None] for t in target]),  # list of (1, H, W)
    ]
    for p, t in forms:
        assert compute_metrics(p, t) == pytest.approx(ref, rel=1e-6)
    # (H, W): one image.
    assert si_rmse(pred[0], target[0]) == pytest.approx(compute_metrics(pred[:1], target[:1])["si_rmse"])


def test_images_without_valid_pixels_are_skipped() -> None:
    target = np.stack([np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2))])
    pred = np.stack([np.array([[1.5, 2.0], [3.0, 4.0]]), np.ones((2, 2))])
    assert compute_metrics(pred, target) == pytest.approx(compute_metrics(pred[:1], target[:1]))
    with pytest.raises(ValueError, match="no valid target pixel"):
        compute_metrics(pred[1:], target[1:])
    with pytest.raises(ValueError, match="no valid target pixel"):
        si_rmse(np.ones((2, 2)), np.full((2, 2), np.nan))


def test_bad_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        compute_metrics(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        compute_metrics(np.ones((2, 3, 3)), np.ones((1, 3, 3)))
    with pytest.raises(ValueError, match="expected a depth map"):
        compute_metrics(np.ones((2, 3, 3, 3)), np.ones((2, 3, 3, 3)))


def test_nan_prediction_is_not_hidden() -> None:
    pred = np.array([[1.0, np.nan, 2.0]])
    assert math.isnan(si_rmse(pred, np.ones((1, 3))))


def test_silog_is_100_times_si_rmse() -> None:
    # The BTS form sqrt(E[d^2] - E[d]^2) is the same variance as the competition's centred form.
    rng = np.random.default_rng(3)
    target = rng.uniform(0.5, 5.0, (3, 6, 6))
    metrics = compute_metrics(target * rng.uniform(0.5, 2.0, target.shape), target)
    assert metrics["silog"] == pytest.approx(100 * metrics["si_rmse"], rel=1e-9)


def test_accumulator_matches_one_call_and_takes_mixed_sizes() -> None:
    rng = np.random.default_rng(2)
    t1, t2 = rng.uniform(0.5, 5.0, (3, 1, 4, 5)), rng.uniform(0.5, 5.0, (2, 1, 4, 5))
    odd = [rng.uniform(0.5, 5.0, (3, 3)), rng.uniform(0.5, 5.0, (6, 2))]
    acc = MetricAccumulator()
    acc.update(torch.from_numpy(t1 * 1.1), torch.from_numpy(t1))
    acc.update(t2 * 0.7, t2)
    acc.update([o * 2 for o in odd], odd)
    acc.update(np.ones((1, 4, 4)), np.zeros((1, 4, 4)))  # no valid pixel: skipped
    assert acc.count == 7
    all_p = list((t1 * 1.1)[:, 0]) + list((t2 * 0.7)[:, 0]) + [o * 2 for o in odd]
    all_t = list(t1[:, 0]) + list(t2[:, 0]) + odd
    assert acc.result() == pytest.approx(compute_metrics(all_p, all_t), rel=1e-12)
    # Per image: the five 1.1x / 0.7x images and the two 2x images average their abs_rel.
    assert acc.result()["abs_rel"] == pytest.approx((3 * 0.1 + 2 * 0.3 + 2 * 1.0) / 7)
    with pytest.raises(ValueError, match="no scored image"):
        MetricAccumulator().result()


def test_pooled_accumulator_equals_pooled_metrics_from_running_sums() -> None:
    """``MetricAccumulator(pooled=True)`` keeps sums, not pixels; the same numbers as concatenating."""
    rng = np.random.default_rng(4)
    targets = [rng.uniform(0.5, 9.0, (h, w)) for h, w in ((6, 8), (10, 4), (3, 3))]
    preds = [t * rng.uniform(0.6, 1.6, t.shape) * (i + 1) for i, t in enumerate(targets)]
    targets[1][0, :] = 0.0  # invalid pixels stay out of the sums too
    acc = MetricAccumulator(pooled=True)
    for p, t in zip(preds, targets, strict=True):
        acc.update(p, t)
    pooled = compute_metrics(preds, targets, pooled=True)
    assert acc.result() == pytest.approx(pooled, rel=1e-9)
    assert acc.result()["si_rmse"] != pytest.approx(compute_metrics(preds, targets)["si_rmse"], rel=1e-3)


def test_the_plain_scoring_is_todays_rule_exactly() -> None:
    """``Scoring()`` (protocol none, no alignment) goes through ``valid_pixels`` itself: bit-equal."""
    from trainables.protocols import Scoring

    rng = np.random.default_rng(5)
    t = rng.uniform(0.0, 20.0, (2, 9, 11))
    t[0, 0, :3] = [0.0, np.nan, -1.0]
    p = t * rng.uniform(0.5, 2.0, t.shape)
    assert compute_metrics(p, t, scoring=Scoring()) == compute_metrics(p, t)
    capped = compute_metrics(p, t, scoring=Scoring("kitti_garg"))
    assert capped != compute_metrics(p, t)  # the cap and the crop take pixels out
