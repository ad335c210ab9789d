"""The trial's configuration: Tune's ``config`` dict becomes a frozen, typed dataclass at the door."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainables.protocols import ALIGN_SPACES, ALIGNMENTS, PROTOCOLS

PRETRAINED_POLICIES = ("yes", "no", "if_available")
SCHEDULES = ("none", "cosine", "onecycle")
AUGMENTS = ("none", "flip", "standard")
LOSSES = ("si_log", "si_log_sqrt")
PREEMPTION_NOTICES = ("none", "gce", "ec2")  # the clouds whose metadata notice a trial can poll


class ConfigError(ValueError):
    """A trial config with unknown keys, wrong types or out-of-range values."""


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs besides the data.

    ``batch_size`` is the per-step batch; ``accum_steps`` steps make one optimiser update, so the
    effective batch is ``batch_size * accum_steps`` (paper: 16 = 2 x 8 on a GPU that fits 2).
    ``pretrained``: ``yes`` fails when released weights cannot be had, ``if_available`` falls back
    to random init and records it (the leaderboard shows ``weights=random``), ``no`` never loads.
    An architecture without released weights (unet) trains from scratch under every policy.
    ``fault`` is for tests only (see ``trainables.loop.check_fault``).

    The recipe (defaults: the paper's, plus horizontal flips): ``augment`` ``none`` / ``flip`` /
    ``standard`` (flip, photometric jitter, small rotation and scale-crop; see
    ``trainables.augment``); ``encoder_lr_mult`` scales the encoder's learning rate (the
    registry's ``encoder`` prefixes); ``warmup_epochs`` of linear warmup before ``schedule``
    (``none``, ``cosine``, or ``onecycle``: torch's one-cycle, warming up for ``warmup_epochs``
    or 30% of training); ``ema`` > 0: the decay of an exponential moving average of the weights,
    which validation, the checkpoints and predictions then use; ``tta``: validation (and, by
    default, ``depth-grid predict`` / ``submit``) average the log-depth of the image and of its
    mirror image. ``tag`` is a free label (the ``recipe`` space names its variants with it).

    ``checkpoint_minutes`` (or, for tests, ``checkpoint_steps``): a resumable checkpoint that often
    inside an epoch, never scored (``trainables.trainable.MidEpochCheckpoints``); 0: at epoch ends only.
    ``train_fraction`` in (0, 1]: train on that share of the split's training side, whole split
    clusters kept or dropped, nested across fractions at one ``seed`` (``trainables.subset``).
    ``world_size`` > 1 (set from ``--gpus-per-trial``): the trial trains data-parallel on that
    many processes; the effective batch stays ``batch_size * accum_steps``, each rank running
    ``accum_steps / world_size`` micro-batches per optimiser step; ``lr`` is unchanged.
    """

    arch: str
    lam: float = 0.5
    lr: float = 1e-4
    weight_decay: float = 1e-3
    epochs: int = 4
    batch_size: int = 2
    accum_steps: int = 8
    image_size: tuple[int, int] = (426, 560)
    pretrained: str = "yes"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "si_log"
    schedule: str = "none"
    amp: bool = True
    channels_last: bool = True
    num_workers: int = 2
    max_steps_per_epoch: int = 0  # 0: the whole training set every epoch
    max_val_images: int = 0  # 0: the whole validation set
    log_images: int = 3
    checkpoint_minutes: float = 0.0  # a resumable mid-epoch checkpoint this often (0: epoch ends only)
    checkpoint_steps: int = 0  # or every this many training steps of an epoch (tests; 0: off)
    preemption_notice: str = "none"  # also poll the cloud's notice: none, gce, ec2 (trainables.preemption)
    seed: int = 0
    augment: str = "flip"
    encoder_lr_mult: float = 1.0
    warmup_epochs: float = 0.0
    ema: float = 0.0  # 0: off; else the decay, e.g. 0.999
    tta: bool = False
    tag: str = ""
    protocol: str = "none"  # validation's evaluation protocol (trainables.protocols.PROTOCOLS)
    align: str = "none"  # validation's alignment of relative depth: none, median, lstsq
    align_space: str = "native"  # lstsq's space: the model's native_space (else depth), depth, inverse, log
    fault: str = ""
    train_fraction: float = 1.0  # of the training side, whole split clusters (trainables.subset)
    world_size: int = 1  # data-parallel processes, one per GPU (--gpus-per-trial; trainables.distributed)
    # On a GPU, arch -> the largest per-step batch that fits (bench_gpu's probe, recorded in
    # search_spaces.profiles.T4_MAX_BATCH); ``on_device`` trains with it, accum_steps keeping the
    # effective batch. Empty, or the arch not in it: batch_size as set.
    gpu_max_batch: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [  # (ok, key, rule)
            (0 <= self.lam <= 1, "lam", "must be in [0, 1]"),
            (self.lr > 0 and math.isfinite(self.lr), "lr", "must be a positive number"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (self.epochs >= 1, "epochs", "must be >= 1"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.accum_steps >= 1, "accum_steps", "must be >= 1"),
            (len(self.image_size) == 2 and min(self.image_size) >= 8, "image_size", "must be (H, W), each >= 8"),
            (self.pretrained in PRETRAINED_POLICIES, "pretrained", f"must be one of {PRETRAINED_POLICIES}"),
            (self.loss in LOSSES, "loss", f"must be one of {LOSSES}"),
            (self.schedule in SCHEDULES, "schedule", f"must be one of {SCHEDULES}"),
            (self.num_workers >= 0, "num_workers", "must be >= 0"),
            (self.max_steps_per_epoch >= 0, "max_steps_per_epoch", "must be >= 0 (0: the whole set)"),
            (self.max_val_images >= 0, "max_val_images", "must be >= 0 (0: the whole set)"),
            (self.augment in AUGMENTS, "augment", f"must be one of {AUGMENTS}"),
            (self.encoder_lr_mult > 0 and math.isfinite(self.encoder_lr_mult), "encoder_lr_mult",
             "must be a positive number (1: the same lr as the rest)"),
            (0 <= self.warmup_epochs <= self.epochs, "warmup_epochs", "must be in [0, epochs]"),
            (0 <= self.ema < 1, "ema", "must be in [0, 1) (0: off, e.g. 0.999)"),
            (self.checkpoint_minutes >= 0, "checkpoint_minutes", "must be >= 0 (0: at epoch ends only)"),
            (self.checkpoint_steps >= 0, "checkpoint_steps", "must be >= 0 (0: off)"),
            (self.preemption_notice in PREEMPTION_NOTICES, "preemption_notice", f"must be one of {PREEMPTION_NOTICES}"),
            *_scoring_checks(self),
            (all(isinstance(v, int) and v >= 1 for v in self.gpu_max_batch.values()), "gpu_max_batch",
             "must map architecture names to batches >= 1"),
            (0 < self.train_fraction <= 1, "train_fraction", "must be in (0, 1] (1: the whole training side)"),
            (self.world_size >= 1, "world_size", "must be >= 1"),
            (self.accum_steps % max(self.world_size, 1) == 0, "accum_steps",
             f"must be a multiple of world_size={self.world_size}: each optimiser step sums one micro-batch "
             "per GPU, and the effective batch batch_size x accum_steps stays as set"),
        ]
        for ok, key, rule in checks:
            if not ok:
                raise ConfigError(f"trial setting {key}={getattr(self, key)!r} {rule} (arch {self.arch!r})")

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.accum_steps

    def on_device(self, device_type: str) -> TrialConfig:
        """The config a trial on ``device_type`` trains with. On ``cuda``, when ``gpu_max_batch``
        names ``arch``: the largest per-step batch, at most that, which divides the effective batch
        into whole steps, a multiple of ``world_size`` of them (one share per GPU), and
        ``accum_steps`` keeping ``batch_size x accum_steps`` (16 on the paper's profile: 2 x 8 becomes
        8 x 2 where 8 fit). Otherwise (the CPU, exact-resume runs) unchanged."""
        probed = self.gpu_max_batch.get(self.arch)
        if device_type != "cuda" or not probed:
            return self
        total = self.effective_batch
        fits = [b for b in range(1, min(probed, total) + 1) if total % b == 0 and (total // b) % self.world_size == 0]
        if not fits:  # an effective batch the world size cannot share: keep what was set
            return self
        batch = max(fits)
        return dataclasses.replace(self, batch_size=batch, accum_steps=total // batch)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrialConfig:
        """Validate a Tune config: unknown keys and wrong types raise ``ConfigError``."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise ConfigError(f"unknown trial config key(s) {unknown}; valid keys: {sorted(fields)}")
        if "arch" not in config:
            raise ConfigError("trial config needs 'arch' (an architecture name)")
        hints = typing.get_type_hints(cls)
        values = {name: _coerce(name, value, hints[name]) for name, value in config.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        return d


def _scoring_checks(cfg: TrialConfig) -> list[tuple[bool, str, str]]:
    """The checks of ``protocol``, ``align`` and ``align_space`` (named in trainables.protocols)."""
    return [(cfg.protocol in PROTOCOLS, "protocol", f"must be one of {tuple(PROTOCOLS)}"),
            (cfg.align in ALIGNMENTS, "align", f"must be one of {ALIGNMENTS}"),
            (cfg.align_space in ("native", *ALIGN_SPACES), "align_space", f"must be one of {('native', *ALIGN_SPACES)}")]


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Accept what Tune and JSON produce (numpy scalars, lists for tuples); reject the rest."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif hint is int:
        if _is_number(value) and float(value).is_integer():
            return int(value)
    elif hint is float:
        if _is_number(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and all(_is_number(v) and float(v).is_integer() for v in value):
            return tuple(int(v) for v in value)
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return dict(value)
    elif isinstance(hint, types.UnionType):  # pragma: no cover - no union fields today
        return value
    raise ConfigError(f"trial config key {name!r}: expected {_hint_name(hint)}, got {value!r} ({type(value).__name__})")


def _is_number(value: Any) -> bool:
    try:
        return not isinstance(value, (bool, np.bool_, str)) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
