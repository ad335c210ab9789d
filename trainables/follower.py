"""What every rank of a trial shares with rank 0, and ranks 1..N-1 themselves.

A trial's device, its model and starting state (new, or resumed from a checkpoint), and its
loop over epochs are the same in the Tune trainable (``trainables.trainable.train_depth``, rank
0, often the only rank) and in each follower of a data-parallel trial (``follow``, started by
``trainables.distributed``). This module does not import Tune, TensorBoard or the validation
code: a follower starts in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from trainables.config import TrialConfig
from trainables.distributed import SINGLE, Ranks
from trainables.loop import Checkpointer, DataBundle, make_loaders, train_one_epoch
from trainables.models import MODELS, PretrainedWeightsError, build_model
from trainables.plugins import load_plugins
from trainables.state import RAW_MODEL_KEY, TrialState
from trainables.vml import resolve_vml

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    """CUDA when this trial holds a GPU that torch can use, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


FROM_SCRATCH = "none (from scratch)"


def build_trial_model(cfg: TrialConfig) -> tuple[torch.nn.Module, str]:
    """The model and where its weights came from: ``pretrained``, ``random``,
    ``random (weights unavailable)`` or, for an architecture without released weights (unet),
    ``none (from scratch)`` under every policy: from scratch by design is never an error."""
    if not MODELS[cfg.arch].has_released_weights:
        return build_model(cfg.arch, pretrained=False, **cfg.model_kwargs), FROM_SCRATCH
    if cfg.pretrained == "no":
        return build_model(cfg.arch, pretrained=False, **cfg.model_kwargs), "random"
    try:
        return build_model(cfg.arch, pretrained=True, **cfg.model_kwargs), "pretrained"
    except PretrainedWeightsError as e:
        if cfg.pretrained == "yes":
            raise
        log.warning("%s: pretrained weights unavailable, training from random init: %s", cfg.arch, e)
        return build_model(cfg.arch, pretrained=False, **cfg.model_kwargs), "random (weights unavailable)"


def trial_model(cfg: TrialConfig, state: dict[str, Any] | None) -> tuple[torch.nn.Module, str]:
    """A new trial's model (``build_trial_model``), or a resumed one's: the architecture alone,
    every weight from the checkpoint ``state``, and the label it started with. A resume never
    needs the hub or the weights cache (a retried trial may land on a node without them)."""
    if state is None:
        return build_trial_model(cfg)
    model = build_model(cfg.arch, pretrained=False, **cfg.model_kwargs)
    model.load_state_dict(state.get(RAW_MODEL_KEY) or state["model"])  # raw_model: saved with an EMA
    return model, state["weights"]


def trial_state(cfg: TrialConfig, train_loader: torch.utils.data.DataLoader, device: torch.device,
                saved: dict[str, Any] | None, ranks: Ranks = SINGLE) -> tuple[TrialState, str]:
    """The trial's state and its weights label (``build_trial_model``): a new one, or the one
    ``saved`` (``last_checkpoint()``) holds. Every rank of a data-parallel trial starts from rank
    0's: the same checkpoint, or rank 0's new weights; only rank 0 keeps an EMA."""
    saved = ranks.from_leader(saved)
    if ranks.leader or saved is not None:
        model, weights = trial_model(cfg, saved)
    else:  # the architecture alone: rank 0's weights follow (same_start)
        model, weights = build_model(cfg.arch, pretrained=False, **cfg.model_kwargs), ""
    state = TrialState.create(cfg, model, train_loader, device)
    if not ranks.leader:
        state.ema = None
    if saved is not None:
        state.load_state_dict(saved, ranks.rank)  # the same shuffle, flips and dropout as unbroken
        log.info("resumed %s from epoch %d", cfg.arch, state.epoch)
    else:
        ranks.same_start(state.model)
    return state, weights


def train_epochs(state: TrialState, loader: torch.utils.data.DataLoader, cfg: TrialConfig, device: torch.device,
                 ranks: Ranks = SINGLE, checkpointer: Checkpointer | None = None,
                 validate: Callable[[float], None] | None = None) -> list[float]:
    """Every rank's epochs, from ``state.epoch`` on; their mean train losses. After each, rank 0
    validates and reports (``validate``, given the epoch's loss) while the other ranks wait."""
    losses = []
    while state.epoch < cfg.epochs:
        losses.append(train_one_epoch(state, loader, cfg, device, checkpointer, ranks))
        state.epoch += 1
        if validate is not None:
            validate(losses[-1])
        ranks.barrier()
    return losses


def follow(config: dict[str, Any], data: DataBundle, plugins: list[str], ranks: Ranks) -> None:
    """Rank ``ranks.rank`` > 0 of a data-parallel trial (``trainables.distributed``): rank 0's
    setup, then the same epochs on its share of each batch; no validation, report or checkpoint."""
    load_plugins(plugins)
    device = ranks.device(pick_device())
    cfg = TrialConfig.from_dict(config).on_device(device.type)  # as rank 0's (train_depth)
    resolve_vml()
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    train_loader, _ = make_loaders(cfg, data, ranks)
    state, _ = trial_state(cfg, train_loader, device, None, ranks)
    train_epochs(state, train_loader, cfg, device, ranks)


