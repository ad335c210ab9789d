"""The training recipe's parts beyond the paper's: encoder learning rate, warmup and one-cycle
schedules, an EMA of the weights, and flip test-time averaging. Every default reproduces the
paper's recipe exactly (one AdamW group, a constant or cosine lr, the raw weights, no TTA)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from trainables.config import TrialConfig
from trainables.models.registry import parameter_groups

if TYPE_CHECKING:
    from timm.utils import ModelEmaV3


def make_optimizer(model: torch.nn.Module, cfg: TrialConfig) -> torch.optim.AdamW:
    """AdamW over one group, or two when ``encoder_lr_mult != 1``: the rest at ``lr`` (group 0,
    the lr the trial reports) and the encoder at ``lr * encoder_lr_mult`` (group 1)."""
    if cfg.encoder_lr_mult == 1:
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    encoder, rest = parameter_groups(model)
    groups = [{"params": rest, "lr": cfg.lr, "name": "rest"},
              {"params": encoder, "lr": cfg.lr * cfg.encoder_lr_mult, "name": "encoder"}]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def steps_per_epoch(n_batches: int, cfg: TrialConfig) -> int:
    """Batches one epoch trains on: all of them, or at most ``max_steps_per_epoch``."""
    return min(n_batches, cfg.max_steps_per_epoch or n_batches)


def updates_per_epoch(n_batches: int, cfg: TrialConfig) -> int:
    """Optimiser steps per epoch (the last partial accumulation also updates)."""
    return math.ceil(steps_per_epoch(n_batches, cfg) / cfg.accum_steps)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrialConfig, updates_per_epoch: int):
    """Per-update lr schedule, or ``None`` (constant lr).

    ``cosine`` without warmup is torch's ``CosineAnnealingLR`` (as before these options);
    ``onecycle`` is torch's ``OneCycleLR`` peaking at each group's lr after ``warmup_epochs``
    (30% of training when 0); a ``warmup_epochs`` before ``none``/``cosine`` ramps linearly
    from 1/100 of the lr.
    """
    total = max(cfg.epochs * updates_per_epoch, 1)
    warmup = round(cfg.warmup_epochs * updates_per_epoch)
    if cfg.schedule == "onecycle":
        pct = warmup / total if warmup else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
            pct_start=min(max(pct, 1 / total), 0.99), anneal_strategy="cos")
    if not warmup:
        if cfg.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return None
    cosine = cfg.schedule == "cosine"

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        if not cosine:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_ema(model: torch.nn.Module, cfg: TrialConfig) -> ModelEmaV3 | None:
    """timm's EMA of every weight and buffer, decay ``cfg.ema`` reached after a warmup
    (``1 - (1 + t)^-3/4`` at update t: short trials average their recent updates, not their
    random init); ``None`` when ``ema == 0``."""
    if cfg.ema == 0:
        return None
    from timm.utils import ModelEmaV3  # timm comes with smp; imported only when asked for

    return ModelEmaV3(model, decay=cfg.ema, use_warmup=True, warmup_power=3 / 4)


def forward_log_tta(model: torch.nn.Module, image: torch.Tensor, tta: bool) -> torch.Tensor:
    """Log-depth (B, 1, h, w) of normalised images (B, 3, h, w); with ``tta`` the mean of the
    prediction and the mirrored prediction of the mirrored image."""
    log_pred = model.forward_log(image)
    if not tta:
        return log_pred
    mirrored = model.forward_log(image.flip(-1)).flip(-1)
    return (log_pred.float() + mirrored.float()) / 2
