"""Training losses on log-depth.

The scale-invariant log loss of Eigen et al. (2014, "Depth Map Prediction from a Single Image
using a Multi-Scale Deep Network", eq. 4)::

    L(y, y*) = mean(d^2) - lam * mean(d)^2,   d_i = log y_i - log y*_i

over the valid pixels of one image, then averaged over the images of the batch. ``lam = 0``
is the plain MSE of log-depth, ``lam = 1`` is fully scale invariant (the variance of ``d``,
i.e. the square of the competition's SI-RMSE), Eigen et al. train with ``lam = 0.5``.

The loss takes the model's log-depth output directly (``DepthModel.forward_log``), so training
never takes the log of a predicted depth that can underflow to 0.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

VALID_MIN = 1e-6  # same threshold as trainables.data.VALID_MIN and the competition
SQRT_EPS = 1e-8  # added under the sqrt of the SILog variant: d sqrt(x)/dx is infinite at 0


def valid_mask(target: Tensor) -> Tensor:
    """Pixels that carry ground truth: finite and greater than 1e-6."""
    return torch.isfinite(target) & (target > VALID_MIN)


def si_log_loss(log_pred: Tensor, target: Tensor, lam: float = 0.5, *, sqrt: bool = False) -> Tensor:
    """Scale-invariant log loss, per image over valid pixels, mean over the images.

    Args:
        log_pred: predicted natural-log depth, (B, 1, H, W) or (B, H, W).
        target: ground-truth depth in metres, same shape (the caller resizes); pixels that are
            not finite or ``<= 1e-6`` are ignored.
        lam: weight of the ``mean(d)^2`` term (0: log-MSE, 1: fully scale invariant).
        sqrt: return ``sqrt(L + 1e-8)`` per image (the "SILog" loss of GLPN and Depth
            Anything's metric-depth fine-tuning; both use ``lam = 0.5`` but pool all valid pixels
            of the batch, and BTS/AdaBins use ``10 * sqrt(L)`` with ``lam = 0.85``). The epsilon
            keeps the gradient finite where ``L = 0``; it biases the value by at most 1e-4.

    Returns:
        A scalar tensor. Images without a valid pixel contribute nothing; a batch without any
        valid pixel gives 0 that still backpropagates (zero gradients), so a training step on
        it is harmless.
    """
    if log_pred.shape != target.shape:
        raise ValueError(f"log_pred {tuple(log_pred.shape)} and target {tuple(target.shape)} must "
                         "have the same shape; resize the prediction to the target first")
    if log_pred.ndim not in (3, 4):
        raise ValueError(f"expected (B, 1, H, W) or (B, H, W) tensors, got {tuple(log_pred.shape)}")
    batch = log_pred.shape[0]
    # At least float32: under autocast the model may emit float16/bfloat16, too coarse for sums.
    dtype = torch.promote_types(log_pred.dtype, torch.float32)
    log_pred, target = log_pred.to(dtype), target.to(dtype)
    valid = valid_mask(target).reshape(batch, -1)  # (B, N)
    # log only of valid targets: log(0) = -inf would turn 0 * inf into NaN in the gradient.
    safe_target = torch.where(valid, target.reshape(batch, -1), torch.ones_like(log_pred).reshape(batch, -1))
    d = torch.where(valid, log_pred.reshape(batch, -1) - torch.log(safe_target), 0.0)  # (B, N)
    n = valid.sum(dim=1)  # (B,)
    denom = n.clamp(min=1).to(d.dtype)
    mean_d = d.sum(dim=1) / denom
    mean_d2 = (d * d).sum(dim=1) / denom
    per_image = mean_d2 - lam * mean_d**2  # (B,)
    if sqrt:
        # Rounding can push a zero variance slightly below 0 when lam = 1.
        per_image = torch.sqrt(per_image.clamp(min=0.0) + SQRT_EPS)
    has_valid = (n > 0).to(d.dtype)
    return (per_image * has_valid).sum() / has_valid.sum().clamp(min=1.0)


LOSSES: dict[str, Callable[..., Tensor]] = {
    "si_log": si_log_loss,
    "si_log_sqrt": partial(si_log_loss, sqrt=True),
}


def get_loss(name: str) -> Callable[..., Tensor]:
    """The loss registered as ``name``: ``fn(log_pred, target, lam=0.5)``."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}") from None
