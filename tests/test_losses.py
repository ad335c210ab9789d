"""Scale-invariant log loss: Eigen's identity, hand-computed values, masking and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainables.losses import LOSSES, SQRT_EPS, get_loss, si_log_loss

TARGET = torch.tensor([[[[0.5, 1.0, 2.0], [3.0, 7.5, 10.0]]]], dtype=torch.float64)  # (1,1,2,3)


@settings(max_examples=40, deadline=None)
@given(eta=st.floats(1e-3, 1e3), lam=st.floats(0.0, 1.0))
def test_eigen_identity(eta: float, lam: float) -> None:
    # Eigen et al.: for y = eta * y*, every d_i = log eta, so L = (1 - lam) (log eta)^2.
    loss = si_log_loss(torch.log(eta * TARGET), TARGET, lam)
    assert loss.item() == pytest.approx((1 - lam) * math.log(eta) ** 2, rel=1e-9, abs=1e-12)
    root = si_log_loss(torch.log(eta * TARGET), TARGET, lam, sqrt=True)
    assert root.item() == pytest.approx(math.sqrt((1 - lam) * math.log(eta) ** 2 + SQRT_EPS), rel=1e-9, abs=1e-6)


@settings(max_examples=20, deadline=None)
@given(shift=st.floats(-10.0, 10.0))
def test_lambda_one_is_scale_invariant(shift: float) -> None:
    log_pred = torch.log(TARGET) + torch.tensor([[[[0.1, -0.2, 0.3], [0.0, 0.5, -0.1]]]], dtype=torch.float64)
    base = si_log_loss(log_pred, TARGET, 1.0)
    assert si_log_loss(log_pred + shift, TARGET, 1.0).item() == pytest.approx(base.item(), abs=1e-10)


def test_hand_computed_value() -> None:
    # d = [log 2, 0, 0, 0]: mean d^2 = (log 2)^2 / 4, mean d = log 2 / 4.
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    log_pred = torch.log(target * torch.tensor([[[[2.0, 1.0], [1.0, 1.0]]]]))
    a = math.log(2)
    expected = a**2 / 4 - 0.3 * (a / 4) ** 2
    assert si_log_loss(log_pred, target, 0.3).item() == pytest.approx(expected, rel=1e-5)


def test_mean_over_images() -> None:
    # image 0: d = [a, a] -> (1 - lam) a^2; image 1: d = [b, -b] -> b^2.
    a, b, lam = 0.4, 0.3, 0.5
    target = torch.ones(2, 1, 1, 2, dtype=torch.float64)
    log_pred = torch.tensor([[[[a, a]]], [[[b, -b]]]], dtype=torch.float64)
    expected = ((1 - lam) * a**2 + b**2) / 2
    assert si_log_loss(log_pred, target, lam).item() == pytest.approx(expected, rel=1e-12)
    # The 3-D (B, H, W) form gives the same number.
    assert si_log_loss(log_pred[:, 0], target[:, 0], lam).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf"), -1.0, 1e-7, 1e-6])
def test_invalid_target_pixels_are_ignored(bad: float) -> None:
    target = torch.tensor([[[[1.0, 2.0, bad, 4.0]]]], dtype=torch.float64)
    # Garbage prediction at the invalid pixel must not matter, not even NaN.
    log_pred = torch.tensor([[[[0.1, 0.9, float("nan"), 1.2]]]], dtype=torch.float64, requires_grad=True)
    loss = si_log_loss(log_pred, target, 0.5)
    d = [0.1 - math.log(1.0), 0.9 - math.log(2.0), 1.2 - math.log(4.0)]
    expected = sum(x * x for x in d) / 3 - 0.5 * (sum(d) / 3) ** 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert torch.isfinite(log_pred.grad).all()
    assert log_pred.grad[0, 0, 0, 2] == 0.0


def test_gradient_matches_formula() -> None:
    # dL/d(log_pred_i) = 2 d_i / n - 2 lam mean(d) / n over the n valid pixels, 0 elsewhere.
    target = torch.tensor([[[[1.0, 2.0, 0.0, 4.0]]]], dtype=torch.float64)
    log_pred = torch.tensor([[[[0.3, 0.1, 5.0, 2.0]]]], dtype=torch.float64, requires_grad=True)
    lam = 0.7
    si_log_loss(log_pred, target, lam).backward()
    d = [0.3, 0.1 - math.log(2.0), 2.0 - math.log(4.0)]
    mean_d = sum(d) / 3
    expected = [2 * d[0] / 3 - 2 * lam * mean_d / 3, 2 * d[1] / 3 - 2 * lam * mean_d / 3, 0.0,
                2 * d[2] / 3 - 2 * lam * mean_d / 3]
    assert log_pred.grad.flatten().tolist() == pytest.approx(expected, rel=1e-10, abs=1e-15)


def test_image_without_valid_pixel_contributes_nothing() -> None:
    target = torch.tensor([[[[1.0, 2.0]]], [[[0.0, float("nan")]]]])
    log_pred = torch.tensor([[[[0.5, 0.2]]], [[[3.0, 4.0]]]])
    alone = si_log_loss(log_pred[:1], target[:1])
    assert si_log_loss(log_pred, target).item() == pytest.approx(alone.item(), rel=1e-6)


@pytest.mark.parametrize("sqrt", [False, True])
def test_batch_without_valid_pixel_gives_zero_with_graph(sqrt: bool) -> None:
    log_pred = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = si_log_loss(log_pred, torch.zeros(2, 1, 3, 3), sqrt=sqrt)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(log_pred.grad, torch.zeros_like(log_pred))


@pytest.mark.parametrize("sqrt", [False, True])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_finite_gradients_at_zero_and_tiny_values(sqrt: bool, lam: float) -> None:
    target = torch.tensor([[[[0.0, 1e-12, 1e-6, 1.0000001e-6, 2e-6, 1.0]]]])
    # A perfect prediction (L = 0, where sqrt has an infinite slope) and a far-off tiny one.
    for log_pred in (torch.log(target.clamp(min=1e-30)), torch.full_like(target, math.log(1e-30))):
        log_pred = log_pred.clone().requires_grad_()
        loss = si_log_loss(log_pred, target, lam, sqrt=sqrt)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(log_pred.grad).all()


def test_sqrt_variant_passes_gradcheck() -> None:
    target = torch.tensor([[[[1.0, 2.0, 0.0], [4.0, 0.5, 3.0]]]], dtype=torch.float64)
    log_pred = torch.tensor([[[[0.2, 0.5, 1.0], [1.1, -0.3, 0.7]]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: si_log_loss(x, target, 0.85, sqrt=True), (log_pred,))


def test_half_precision_input_is_computed_in_float32() -> None:
    target = torch.rand(2, 1, 8, 8) * 5 + 0.5
    log_pred = (torch.log(target) + 0.1 * torch.randn_like(target)).to(torch.bfloat16).requires_grad_()
    loss = si_log_loss(log_pred, target)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(si_log_loss(log_pred.detach().float(), target).item(), rel=1e-6)
    loss.backward()
    assert log_pred.grad.dtype == torch.bfloat16 and torch.isfinite(log_pred.grad).all()


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same shape"):
        si_log_loss(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="expected"):
        si_log_loss(torch.zeros(4, 4), torch.ones(4, 4))


def test_registry() -> None:
    target = TARGET * 1.0
    log_pred = torch.log(TARGET) + 0.1 * torch.arange(6, dtype=torch.float64).view(1, 1, 2, 3)
    plain = LOSSES["si_log"](log_pred, target, 0.5)
    assert get_loss("si_log_sqrt")(log_pred, target, 0.5).item() == pytest.approx(
        math.sqrt(plain.item() + SQRT_EPS))
    with pytest.raises(KeyError, match="si_log"):
        get_loss("l2")
