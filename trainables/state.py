"""A trial's training state: what one epoch hands the next, and all its checkpoint holds.

``TrialState.create`` builds a new trial's (the optimiser, AMP scaler, lr schedule and EMA its
config asks for); ``state_dict`` is the checkpoint's dict and ``load_state_dict`` resumes from
one exactly: every weight, the optimiser's moments, the schedule, the epoch, and every random
state the next epoch draws from, so a resumed trial ends bit-identical to one never stopped
(``tests/test_faults.py``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainables.config import TrialConfig
from trainables.recipe import make_ema, make_optimizer, make_scheduler, updates_per_epoch
from trainables.sampler import EpochSampler

if TYPE_CHECKING:
    from timm.utils import ModelEmaV3

# checkpoint.pt's keys, in the order they are written. grid/checkpoints.py, the leaderboard,
# predict and export read them and docs/DESIGN.md lists them: changing one changes the format.
CHECKPOINT_KEYS = ("model", "optimizer", "scaler", "scheduler", "epoch", "arch_config", "trial_config",
                   "image_size", "metrics", "weights", "train_seconds", "rng", "provenance")
# The trial's record, which the trainable hands to ``state_dict``; the state writes the others.
RECORD_KEYS = ("trial_config", "image_size", "metrics", "weights", "provenance")
# Written last when an EMA is on: "model" then holds the EMA's weights, and a resume needs the raw ones.
RAW_MODEL_KEY = "raw_model"
# Written (after raw_model) only by a checkpoint taken inside an epoch (``EpochProgress``): the
# trainable resumes from it, and nothing scores it (its "metrics" record says mid_epoch).
MID_EPOCH_KEY = "mid_epoch"
# Written by a data-parallel trial (``trainables.distributed``): the random states of ranks 1..N-1,
# each as ``rng`` holds rank 0's, so every rank resumes its own dropout and loader draws.
RANK_RNG_KEY = "rank_rngs"


@dataclass
class EpochProgress:
    """How far the epoch in progress has got: ``step`` training steps done, the sum and count
    of their losses (a float sum in step order, so a resumed epoch's mean loss is the unbroken
    one's). The gradients accumulated since the last optimiser step live on the model and go
    into a mid-epoch checkpoint beside this."""

    step: int = 0
    loss_total: float = 0.0
    loss_count: int = 0

    def finish(self) -> float:
        """The epoch's mean loss; the progress starts again at step 0 for the next epoch."""
        mean = self.loss_total / max(self.loss_count, 1)
        self.step, self.loss_total, self.loss_count = 0, 0.0, 0
        return mean


@dataclass
class TrialState:
    """Everything a trial carries from one epoch to the next.

    ``epoch`` counts the epochs done, so it is also the next one to train (0-based);
    ``train_seconds`` is their training and validation time. ``train_loader`` is here for its
    generator (the shuffle order, the loader workers' seeds), part of the random state a
    checkpoint saves; a bare loop that never checkpoints (tests, benchmarks) may leave it
    ``None``. ``resumed_epoch`` is the epoch this process resumed at, -1 in a fresh trial (the
    test-only ``kill`` fault fires only then); it is not saved. ``progress`` is the position
    inside epoch ``epoch`` (step 0 between epochs); a checkpoint taken inside an epoch saves it.
    ``rank_rngs``: in rank 0 of a data-parallel trial, the other ranks' random states, gathered
    before each checkpoint (``Ranks.gather_rng``).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    ema: ModelEmaV3 | None = None
    train_loader: DataLoader | None = None
    epoch: int = 0
    train_seconds: float = 0.0
    resumed_epoch: int = -1
    progress: EpochProgress = field(default_factory=EpochProgress)
    rank_rngs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(cls, cfg: TrialConfig, model: torch.nn.Module, train_loader: DataLoader,
               device: torch.device) -> TrialState:
        """A new trial's state: ``model`` moved to ``device`` (channels-last on CUDA when
        ``cfg.channels_last``), with the optimiser, scaler, schedule and EMA ``cfg`` asks for."""
        model.to(device)
        if device.type == "cuda" and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp)
        scheduler = make_scheduler(optimizer, cfg, updates_per_epoch(len(train_loader), cfg))
        ema = make_ema(model, cfg)
        return cls(model, optimizer, scaler, scheduler, ema, train_loader)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights validation, checkpoints and predictions use: the EMA's when it is on."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self, record: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint: this state, plus the trial's ``record`` (``RECORD_KEYS``), keyed and
        ordered as ``CHECKPOINT_KEYS`` (then ``raw_model`` with an EMA). Plain tensors and
        containers, so it loads with ``torch.load(weights_only=True)``."""
        if sorted(record) != sorted(RECORD_KEYS):
            raise ValueError(f"a checkpoint record has the keys {RECORD_KEYS}, got {tuple(record)}")
        if self.train_loader is None:
            raise ValueError("a state without its train loader cannot be checkpointed: the "
                             "loader's generator is part of the random state")
        own = {
            "model": self.eval_model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "epoch": self.epoch, "arch_config": self.model.arch_config,
            "train_seconds": self.train_seconds, "rng": rng_state(self.train_loader),
        }
        both = {**own, **record}
        state = {key: both[key] for key in CHECKPOINT_KEYS}
        if self.ema is not None:
            state[RAW_MODEL_KEY] = self.model.state_dict()
        if self.progress.step:
            state[MID_EPOCH_KEY] = {**asdict(self.progress), "grads": accumulated_grads(self.model)}
        if self.rank_rngs:
            state[RANK_RNG_KEY] = self.rank_rngs
        return state

    def load_state_dict(self, state: dict[str, Any], rank: int = 0) -> None:
        """Resume from a checkpoint (``state_dict``'s dict): the next epoch trains, shuffles,
        flips and drops out exactly as it would have in the run that saved it. ``rank``: the
        rank of a data-parallel trial this process is; it takes its own random state."""
        if self.train_loader is None:
            raise ValueError("a state without its train loader cannot resume its random state")
        self.model.load_state_dict(state.get(RAW_MODEL_KEY) or state["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.rank_rngs = list(state.get(RANK_RNG_KEY, []))
        rngs = [state["rng"], *self.rank_rngs]
        if rank < len(rngs):  # else: saved by fewer ranks; this one keeps its seeded stream
            set_rng_state(rngs[rank], self.train_loader)
        self.epoch = self.resumed_epoch = state["epoch"]
        self.train_seconds = state.get("train_seconds", 0.0)
        mid = state.get(MID_EPOCH_KEY) or {}
        self.progress = EpochProgress(mid.get("step", 0), mid.get("loss_total", 0.0), mid.get("loss_count", 0))
        set_accumulated_grads(self.model, mid.get("grads", []))


def accumulated_grads(model: torch.nn.Module) -> list[torch.Tensor | None]:
    """The gradients summed since the last optimiser step, one per parameter (empty when none:
    a checkpoint at an accumulation group's end)."""
    grads = [p.grad for p in model.parameters()]
    return [] if all(g is None for g in grads) else [g.detach().clone() if g is not None else None for g in grads]


def set_accumulated_grads(model: torch.nn.Module, grads: list[torch.Tensor | None]) -> None:
    """Put back what ``accumulated_grads`` saved (nothing when it is empty)."""
    params = list(model.parameters())
    if grads and len(grads) != len(params):
        raise ValueError(f"a checkpoint with gradients of {len(grads)} parameters for a model of {len(params)}")
    for p, g in zip(params, grads, strict=False):
        p.grad = g.to(p.device) if g is not None else None


def rng_state(loader: DataLoader) -> dict[str, Any]:
    """Every random state the next step draws from: torch (dropout), CUDA, numpy, Python, the
    train loader's generator (its workers' seeds) and its sampler's seed (each epoch's order and
    each sample's flips and jitter, ``trainables.sampler``).
    Plain tensors and tuples, so checkpoints still load with ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(), "loader": loader.generator.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
        "sampler": getattr(loader.sampler, "seed", None),  # EpochSampler's: each epoch's order and sample seeds
    }


def set_rng_state(state: dict[str, Any], loader: DataLoader) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    loader.generator.set_state(state["loader"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state.get("sampler") is not None and isinstance(loader.sampler, EpochSampler):
        loader.sampler.seed = state["sampler"]
