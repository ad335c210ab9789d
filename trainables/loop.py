"""The trial's small helpers: loaders, one training epoch, evaluation, depth panels."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from torch.utils.data import DataLoader

from trainables.config import TrialConfig
from trainables.data import DatasetSpec, Item
from trainables.dataset import DepthDataset, collate, denormalize
from trainables.distributed import SINGLE, Ranks
from trainables.losses import si_log_loss
from trainables.metrics_torch import DeviceMetricAccumulator
from trainables.protocols import Scoring
from trainables.recipe import forward_log_tta, steps_per_epoch, updates_per_epoch
from trainables.sampler import EpochSampler, SeededSamples
from trainables.state import rng_state
from trainables.subset import train_subset

if TYPE_CHECKING:  # trainables.state builds on this module
    from trainables.state import EpochProgress, TrialState


@dataclass(frozen=True)
class DataBundle:
    """What every trial shares through the object store: the spec and the split's item lists
    (paths and names, not pixels: each trial reads the images from disk itself)."""

    spec: DatasetSpec
    train: tuple[Item, ...]
    val: tuple[Item, ...]
    split_id: str = ""
    train_clusters: tuple[int, ...] = ()  # the split cluster of each train item: train_fraction keeps whole ones


class InjectedFault(RuntimeError):
    """Raised by the test-only ``fault`` option."""


def _loader_options(cfg: TrialConfig) -> dict:
    return {"num_workers": cfg.num_workers, "collate_fn": collate, "pin_memory": torch.cuda.is_available()}


def make_loaders(cfg: TrialConfig, data: DataBundle, ranks: Ranks = SINGLE) -> tuple[DataLoader, DataLoader]:
    """The train loader (of this rank's share of each epoch's order, ``EpochSampler.shard``) and
    the validation loader."""
    train_items = train_subset(data.train, data.train_clusters, cfg.train_fraction, cfg.seed)
    train_ds = DepthDataset(train_items, data.spec, size=cfg.image_size, train=True, augment=cfg.augment)
    gen = torch.Generator().manual_seed(cfg.seed)
    # Epoch E's order is a function of (seed, E) and each sample draws its flips and jitter from
    # a seed of its own (trainables.sampler), so a trial resumed at any step of any epoch reads
    # what one never stopped reads, whatever the number of workers. ``gen`` only seeds the
    # workers' processes (its state is still saved with the checkpoint's random state).
    sampler = EpochSampler(len(train_ds), cfg.seed).shard(cfg.batch_size, ranks.rank, ranks.world)
    train = DataLoader(SeededSamples(train_ds), sampler=sampler,
                       batch_size=cfg.batch_size, drop_last=len(train_ds) > cfg.batch_size, generator=gen,
                       **_loader_options(cfg))
    return train, eval_loader(cfg, list(data.val)[: cfg.max_val_images or None], data.spec)


def eval_loader(cfg: TrialConfig, items: list[Item], spec: DatasetSpec) -> DataLoader:
    """Evaluation batches of ``items`` (in order; targets at native size), as validation reads them."""
    dataset = DepthDataset(items, spec, size=cfg.image_size, train=False)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, **_loader_options(cfg))


def _autocast(cfg: TrialConfig, device: torch.device):
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=torch.float16)  # T4/P100: no bf16
    return contextlib.nullcontext()


def _to_device(x: torch.Tensor, cfg: TrialConfig, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def check_fault(cfg: TrialConfig, epoch: int, step: int, resumed_epoch: int = -1) -> None:
    """Test-only faults, ``[ARCH:]KIND@ARG``: ``raise@E.S`` raises at epoch E step S (in every
    attempt); ``kill@E.S`` SIGKILLs this trial process there and ``term@E.S`` sends it SIGTERM
    (a preemption notice, ``trainables.preemption``), both only in a trial that was not restored
    from a checkpoint (``resumed_epoch < 0``), so the retried trial goes on (a checkpoint must
    exist before E.S: E >= 1, or ``checkpoint_steps`` <= S); ``sleep@SECONDS`` sleeps every
    step. Without ``ARCH:`` every trial."""
    if not cfg.fault:
        return
    target, _, spec = cfg.fault.rpartition(":")
    if target and target != cfg.arch:
        return
    kind, _, arg = spec.partition("@")
    if kind == "sleep":
        time.sleep(float(arg))
        return
    e, s = (int(v) for v in arg.split("."))
    if (epoch, step) != (e, s):
        return
    if kind == "raise":
        raise InjectedFault(f"injected fault at epoch {epoch} step {step} (config fault={cfg.fault!r})")
    if kind in ("kill", "term") and resumed_epoch < 0:
        os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else signal.SIGTERM)


# The loss is read back to the host (a sync that stalls the GPU's queue) once per this many steps,
# and before every checkpoint, instead of after every step.
SYNC_STEPS = 16


class Checkpointer(Protocol):
    """What ``train_one_epoch`` asks after each step: is a mid-epoch checkpoint due, and save it."""

    def due(self, done: int, n_steps: int) -> bool: ...

    def save(self) -> None: ...


def epoch_batches(loader: Iterable, epoch: int, start: int) -> Iterable:
    """Epoch ``epoch``'s batches from step ``start`` on: a loader with an ``EpochSampler`` starts
    its order there (no skipped batch is read); another iterable (a list of batches) skips them."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, EpochSampler):
        sampler.set_epoch(epoch, min(start * loader.batch_size, sampler.n))
        return loader
    return itertools.islice(loader, start, None)


def _add_losses(progress: EpochProgress, pending: list[tuple[int, torch.Tensor]], epoch: int,
                ranks: Ranks = SINGLE, n_steps: int = 0) -> None:
    """Read the ``(step, loss)`` pairs back in one sync (of every rank: ``Ranks.all_losses``) and
    add them to the epoch's sum, in step order (the same float sum whether the epoch was resumed
    or not, and on any number of ranks); a non-finite one raises, on every rank alike."""
    if not pending:
        return
    for step, value in ranks.all_losses(pending, n_steps):
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite training loss at epoch {epoch} step {step}")
        progress.loss_total += value
        progress.loss_count += 1
    pending.clear()


def _train_step(state: TrialState, batch: dict, cfg: TrialConfig, device: torch.device,
                group_size: int) -> torch.Tensor:
    """Forward and backward on one micro-batch; its loss, not yet read back."""
    image = _to_device(batch["image"], cfg, device)  # (B, 3, h, w)
    target = batch["depth"].to(device, non_blocking=True)  # (B, 1, h, w)
    with _autocast(cfg, device):
        log_pred = state.model.forward_log(image)  # (B, 1, h, w)
    loss = si_log_loss(log_pred.float(), target, cfg.lam, sqrt=cfg.loss == "si_log_sqrt")
    # Each update applies the gradient of its group's mean loss; the epoch's last group may hold
    # fewer than accum_steps steps, so divide by its real size (summed over the ranks, if several).
    state.scaler.scale(loss / group_size).backward()
    return loss.detach()


def train_one_epoch(state: TrialState, loader: DataLoader, cfg: TrialConfig, device: torch.device,
                    checkpointer: Checkpointer | None = None, ranks: Ranks = SINGLE) -> float:
    """Train epoch ``state.epoch`` (0-based): one pass over ``loader`` (or ``max_steps_per_epoch``
    steps) with gradient accumulation; the mean loss. The schedule steps and the EMA updates
    after every optimiser step; the caller advances ``state.epoch`` once the epoch is done.

    ``state.progress`` says where the epoch starts: a state resumed from a mid-epoch checkpoint
    goes on from its step, with the loss sum and the accumulated gradients it saved. After each
    step ``checkpointer`` (the trainable's) may save one; the losses are read first, so a
    checkpoint never follows a non-finite loss.

    ``ranks`` (a data-parallel trial, ``trainables.distributed``): each round trains steps
    ``first .. first + world - 1``, step ``first + rank`` on this rank (its loader's shard of the
    same order), and an optimiser step sums its group's gradients over the ranks, so the
    effective batch stays ``batch_size * accum_steps``. Rank 0 decides when to checkpoint, and
    only at a group's end (the other ranks' gradients are not in its checkpoint)."""
    model, optimizer, scaler, epoch = state.model, state.optimizer, state.scaler, state.epoch
    progress = state.progress
    model.train()
    n_steps = steps_per_epoch(len(loader), cfg)
    start = progress.step
    if start % cfg.accum_steps == 0:  # mid-group, the gradients so far came with the checkpoint
        optimizer.zero_grad(set_to_none=True)
    update = epoch * updates_per_epoch(len(loader), cfg) + start // cfg.accum_steps  # optimiser steps so far
    pending: list[tuple[int, torch.Tensor]] = []  # losses not yet read back
    batches = iter(epoch_batches(loader, epoch, start) if start < n_steps else ())
    owed = False  # a checkpoint is due (with several ranks it waits for the group's end)
    for first in range(start, n_steps, ranks.world):
        step = first + ranks.rank
        group_start = first - first % cfg.accum_steps
        group_size = min(cfg.accum_steps, n_steps - group_start)
        if step < n_steps:
            batch = next(batches)
            check_fault(cfg, epoch, step, state.resumed_epoch)
            pending.append((step, _train_step(state, batch, cfg, device, group_size)))
        else:  # the epoch's last round has fewer steps than ranks: this one sits it out
            pending.append((step, torch.zeros((), device=device)))
        progress.step = min(first + ranks.world, n_steps)
        group_done = progress.step - group_start == group_size
        if group_done:
            ranks.sum_grads(model)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if state.scheduler is not None:
                state.scheduler.step()
            update += 1
            if state.ema is not None:
                state.ema.update(model, step=update)
        if len(pending) >= SYNC_STEPS:
            _add_losses(progress, pending, epoch, ranks, n_steps)
        owed = owed or (checkpointer is not None and checkpointer.due(progress.step, n_steps))
        if ranks.decide(owed and (group_done or ranks.world == 1)):
            owed = False
            _add_losses(progress, pending, epoch, ranks, n_steps)
            state.rank_rngs = ranks.gather_rng(rng_state(loader) if ranks.world > 1 else None)
            if checkpointer is not None:
                checkpointer.save()
    _add_losses(progress, pending, epoch, ranks, n_steps)
    state.rank_rngs = ranks.gather_rng(rng_state(loader) if ranks.world > 1 else None)  # for the epoch's checkpoint
    return progress.finish()


def trial_scoring(cfg: TrialConfig, model: torch.nn.Module, spec: DatasetSpec | None,
                  protocol: str | None = None) -> Scoring:
    """How the trial scores: ``protocol`` (default ``cfg.protocol``) on data read with
    ``spec``'s crop, ``cfg.align`` in ``cfg.align_space`` (``native``: the model's
    ``native_space`` attribute when its architecture declares one, else depth)."""
    space = cfg.align_space if cfg.align_space != "native" else getattr(model, "native_space", "depth")
    return Scoring(protocol or cfg.protocol, cfg.align, space, data_crop=spec.crop if spec is not None else None)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader: DataLoader, cfg: TrialConfig, device: torch.device,
             n_examples: int = 0, *, scoring: Scoring | None = None) -> tuple[dict[str, float], list[np.ndarray]]:
    """Metrics at each target's native resolution (prediction upsampled bilinearly), plus up to
    ``n_examples`` depth panels of the first validation images; ``cfg.tta`` averages each
    prediction with the mirrored prediction of the mirrored image. ``scoring``: the protocol
    and alignment (default ``trial_scoring``: the trial's ``protocol`` and ``align``)."""
    model.eval()
    if scoring is None:
        scoring = trial_scoring(cfg, model, getattr(loader.dataset, "spec", None))
    acc = DeviceMetricAccumulator(scoring)  # on the prediction's device: no map copied back
    panels: list[np.ndarray] = []
    for batch in loader:
        image = _to_device(batch["image"], cfg, device)
        with _autocast(cfg, device):
            log_pred = forward_log_tta(model, image, cfg.tta)
        targets = batch["depth"]
        for i in range(image.shape[0]):
            target = targets[i]  # (1, H, W) native
            pred = F.interpolate(log_pred[i : i + 1].float(), size=target.shape[-2:], mode="bilinear",
                                 align_corners=False).exp()[0]  # (1, H, W) on the device
            acc.update(pred[None], target[None])
            if len(panels) < n_examples:
                rgb = F.interpolate(denormalize(batch["image"][i : i + 1]), size=target.shape[-2:], mode="bilinear",
                                    align_corners=False)[0]
                panels.append(depth_panel(rgb.numpy(), target[0].numpy(), pred[0].cpu().numpy()))
    return acc.result(), panels


def depth_panel(rgb: np.ndarray, target: np.ndarray, pred: np.ndarray, cmap: str = "magma_r") -> np.ndarray:
    """RGB | target | prediction side by side as (3, H, 3W) floats, both depths on one colour
    scale (the target's valid range); invalid target pixels are black."""
    valid = target > 1e-6
    lo, hi = (float(target[valid].min()), float(target[valid].max())) if valid.any() else (0.0, 1.0)
    scale = max(hi - lo, 1e-6)
    colour = colormaps[cmap]

    def paint(d: np.ndarray) -> np.ndarray:
        img = colour(np.clip((d - lo) / scale, 0, 1))[..., :3].transpose(2, 0, 1)
        return img

    tgt = paint(target) * valid[None]
    return np.concatenate([rgb.astype(np.float64), tgt, paint(pred)], axis=2).astype(np.float32)
