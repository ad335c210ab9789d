"""Depth-pretrained Hugging Face models as depth models: what they share.

The released checkpoints predict one of two things, and that decides how their head's output
``z`` (the value before the head's last activation) becomes log-depth:

- **Metric depth** (GLPN, Depth Anything V2 metric): the head computes ``sigmoid(z) * max_depth``
  metres. ``MetricLogDepth`` returns ``log(max_depth) + logsigmoid(z)``: exactly the log of
  that depth, computed in log space, so a pixel near 0 m neither needs a clamp nor loses its
  gradient.
- **Relative inverse depth** (DPT/MiDaS, Depth Anything V2 relative): the head's ``relu(z)`` is a
  disparity known only up to a scale and a shift (the checkpoints were trained with an
  affine-invariant loss on inverse depth). ``InverseLogDepth`` keeps that meaning:
  ``depth = scale / (softplus(z) + shift)``, i.e. inverse depth is an affine map of the
  checkpoint's disparity with learnable, positive ``1/scale`` and ``shift/scale``. The
  scale-invariant loss ignores a global log-scale (``scale``) but not the shift, which is why the
  shift is learned rather than fixed; softplus replaces the ReLU so no pixel is left without
  gradient (they differ by at most log 2, at ``z = 0``). The checkpoint's disparity units are
  unknown until it sees data, so the first training batch sets ``scale`` and ``shift`` (as
  ActNorm initialises from data): the batch's median pixel at 3 m and ``shift`` a tenth of the
  median disparity, so the farthest pixel stays within about 11x the median depth. Adam at the
  paper's lr (1e-4) would need thousands of steps to move a log-scale that starts a factor 10 off.

Both are documented, with their sources, in ``docs/models.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models.base import LOG_DEPTH_INIT, DepthModel, crop_to, pad_to_multiple, upsample_to
from trainables.models.registry import PretrainedWeightsError

SHIFT_FRACTION = 0.1  # shift = 0.1 x the first batch's median disparity (module docstring)
MIN_DISPARITY = 1e-6  # floor of that median: a random-init head can output ~0 everywhere


class MetricLogDepth(nn.Module):
    """``z`` -> ``log(sigmoid(z) * max_depth)``, the log of a metric head's depth."""

    def __init__(self, max_depth: float) -> None:
        super().__init__()
        self.log_max_depth = math.log(max_depth)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_max_depth + F.logsigmoid(z.float())


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


class InverseLogDepth(nn.Module):
    """``z`` -> ``log(scale / (softplus(z) + shift))``: an affine map of relative disparity.

    ``scale`` and ``shift`` are learned (``log_scale``; ``shift = softplus(raw_shift)`` > 0) and
    set from the first training batch (``calibrated`` records that, and travels with the weights).
    """

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(LOG_DEPTH_INIT))
        self.raw_shift = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("calibrated", torch.tensor(False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        disparity = F.softplus(z.float())
        if self.training and not bool(self.calibrated):
            self.calibrate(disparity)
        return self.log_scale - torch.log(disparity + F.softplus(self.raw_shift))

    @torch.no_grad()
    def calibrate(self, disparity: torch.Tensor) -> None:
        """Median pixel of ``disparity`` at 3 m, shift a tenth of that median disparity."""
        median = disparity.detach().median().clamp(min=MIN_DISPARITY)
        shift = SHIFT_FRACTION * median
        self.raw_shift.copy_(_inverse_softplus(shift))
        self.log_scale.copy_(LOG_DEPTH_INIT + torch.log(median + shift))
        self.calibrated.fill_(True)


class HFDepthModel(DepthModel):
    """A transformers depth model whose head's last activation is replaced by ``to_log``.

    Subclasses implement ``pre_activation``: padded image -> the head's ``z`` (B, 1, h, w).

    Args:
        net: the transformers model (``...ForDepthEstimation``).
        to_log: ``MetricLogDepth`` or ``InverseLogDepth``, as the checkpoint predicts.
        multiple: the input is padded to a multiple of this (the patch grid / the stage strides).
    """

    def __init__(self, net: nn.Module, to_log: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.to_log = to_log
        self.multiple = multiple
        # What the checkpoint predicts, for validation's least-squares alignment (trainables.loop).
        self.native_space = "inverse" if isinstance(to_log, InverseLogDepth) else "depth"

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, h, w)
        raise NotImplementedError

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.multiple)
        z = self.pre_activation(x)                    # (B, 1, h, w), h and w the padded size or less
        return crop_to(upsample_to(self.to_log(z), x.shape[-2:]), size)  # (B, 1, H, W)


def output_map(relative: bool, max_depth: float | None) -> nn.Module:
    """The ``to_log`` for a checkpoint that predicts relative inverse depth, or metric depth up to
    ``max_depth`` metres."""
    return InverseLogDepth() if relative else MetricLogDepth(float(max_depth))


def freeze_unused(net: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Freeze the parameters the depth path never uses, named by prefix (kept, so the weights
    match the released file): DINOv2's mask token (masked-image pretraining only), the first
    fusion layer's residual unit (that layer has no residual input), a final norm nobody reads."""
    for name, param in net.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(False)


def require_all_loaded(source: str, not_loaded: list[str], unused: tuple[str, ...] = ()) -> None:
    """Every weight of these architectures comes from the checkpoint, the head included (those
    the depth path never uses, prefixes ``unused``, may be absent)."""
    not_loaded = [k for k in not_loaded if not k.startswith(unused)] if unused else not_loaded
    if not_loaded:
        raise PretrainedWeightsError(
            f"{source}: {len(not_loaded)} weights are not in the snapshot (e.g. {not_loaded[:3]}); "
            "it is not a checkpoint of this architecture")
