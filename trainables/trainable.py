"""The Tune function trainable: one trial trains one architecture at one lambda / lr.

Used as ``tune.with_parameters(train_depth, data=bundle)`` (see ``grid.experiment.run``). Each epoch it
validates with every metric, reports with a checkpoint, and logs TensorBoard scalars and depth
panels into the trial folder. A restarted trial resumes from ``tune.get_checkpoint()``.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray import tune
from torch.utils.tensorboard import SummaryWriter

from trainables.config import ConfigError, TrialConfig
from trainables.distributed import Ranks, data_parallel
from trainables.eval_sets import EvalSet, score_eval_sets
from trainables.follower import FROM_SCRATCH as FROM_SCRATCH
from trainables.follower import build_trial_model as build_trial_model
from trainables.follower import pick_device, train_epochs, trial_state
from trainables.follower import trial_model as trial_model
from trainables.io import atomic_write, write_json
from trainables.loop import DataBundle, evaluate, make_loaders
from trainables.plugins import load_plugins
from trainables.preemption import (
    MID_EPOCH_FILE,
    InstallsSigtermHandler,
    Notice,
    TrialPreempted,
    listening,
)
from trainables.provenance import device_name, versions
from trainables.retries import check_retries
from trainables.scores import BestScores, write_scores
from trainables.state import TrialState
from trainables.timing import inference_ms
from trainables.vml import resolve_vml

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(directory: Path, state: dict[str, Any]) -> None:
    with atomic_write(directory / CHECKPOINT_FILE, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def last_checkpoint() -> dict[str, Any] | None:
    """The checkpoint Tune restarts this trial from (``tune.get_checkpoint()``), or ``None``."""
    checkpoint = tune.get_checkpoint()
    return load_checkpoint(checkpoint) if checkpoint is not None else None


def _trial_dir() -> Path:
    try:
        return Path(tune.get_context().get_trial_dir())
    except Exception:  # outside Tune (direct calls in benchmarks): a temp folder
        return Path(tempfile.mkdtemp(prefix="depth-trial-"))


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # not inside Ray
        return ""


def _gpu_ids() -> str:
    """The GPUs Ray assigned to this trial (logical ones too), e.g. "0"; empty when none."""
    try:
        import ray

        return ",".join(str(g) for g in ray.get_gpu_ids())
    except Exception:
        return ""


HPARAMS = ("arch", "lam", "lr", "weight_decay", "epochs", "batch_size", "accum_steps", "image_size",
           "pretrained", "model_kwargs", "loss", "schedule", "seed", "augment", "encoder_lr_mult",
           "warmup_epochs", "ema", "tta", "tag")
HPARAM_METRICS = ("val/si_rmse", "val/abs_rel", "val/rmse", "val/delta1", "train/train_loss")


def write_hparams(writer: SummaryWriter, cfg: TrialConfig) -> None:
    """The trial's settings for TensorBoard's HParams view, in the trial's own event file (one
    run per trial), linked to the scalars this trainable logs."""
    from torch.utils.tensorboard.summary import hparams

    values = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
              for k, v in cfg.to_dict().items() if k in HPARAMS}
    for summary in hparams(values, dict.fromkeys(HPARAM_METRICS, 0.0)):
        writer.file_writer.add_summary(summary)


@dataclass(frozen=True)
class TrialInfo:
    """What stays fixed through a trial and goes with each epoch's result and checkpoint."""

    cfg: TrialConfig
    device: torch.device
    weights: str  # where the weights came from: build_trial_model's label
    params: int
    provenance: dict[str, Any]  # the driver's, plus this trial's versions, device and host

    def record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint's part beside the training state (``trainables.state.RECORD_KEYS``)."""
        return {"trial_config": self.cfg.to_dict(), "image_size": list(self.cfg.image_size),
                "metrics": metrics, "weights": self.weights, "provenance": self.provenance}


def trial_provenance(provenance: dict[str, Any] | None, device: torch.device) -> dict[str, Any]:
    """The driver's provenance (command, versions, commit) with this trial's versions, device and
    host: a worker node may differ from the driver."""
    return {**(provenance or {}), "trial_versions": versions(), "device": device_name(device),
            "hostname": platform.node(), "node_id": _node_id()}


def epoch_result(state: TrialState, trial: TrialInfo, train_loss: float,
                 metrics: dict[str, float]) -> dict[str, Any]:
    """The epoch just done (``state.epoch``) as Tune's result row."""
    return {
        "epoch": state.epoch, "train_loss": train_loss, **metrics, "lr": state.optimizer.param_groups[0]["lr"],
        "params": trial.params, "weights": trial.weights, "device": trial.device.type,
        "train_seconds": state.train_seconds, "hostname": platform.node(), "node_id": _node_id(),
        "gpu_ids": _gpu_ids(), "device_name": trial.provenance["device"],  # priced by grid.cost
        "world_size": trial.cfg.world_size,
        "resumed_at_epoch": state.resumed_epoch,  # -1, or where this process took the trial up from its checkpoint
    }


def log_epoch(writer: SummaryWriter, state: TrialState, result: dict[str, Any], metrics: dict[str, float],
              panels: list[np.ndarray]) -> None:
    """TensorBoard: the train loss, the validation ``metrics``, the lr(s) and the depth panels."""
    step = state.epoch
    for key in ("train_loss", *metrics):
        writer.add_scalar(f"{'train' if key == 'train_loss' else 'val'}/{key}", result[key], step)
    writer.add_scalar("train/lr", result["lr"], step)
    if len(state.optimizer.param_groups) > 1:
        writer.add_scalar("train/lr_encoder", state.optimizer.param_groups[1]["lr"], step)
    for i, panel in enumerate(panels):
        writer.add_image(f"val/depth_{i}", panel, step)  # RGB | target | prediction
    writer.flush()


def report(state: TrialState, trial: TrialInfo, result: dict[str, Any],
           scores: dict[str, float] | None = None) -> None:
    """Report ``result`` to Tune with the epoch's checkpoint: ``checkpoint.pt`` (the state and
    the trial's record) and ``metrics.json`` (read by the leaderboard)."""
    metrics = {k: v for k, v in result.items() if k != "weights"}
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp), state.state_dict(trial.record(metrics)))
        write_json(Path(tmp) / "metrics.json", metrics)
        write_scores(Path(tmp), scores)  # per-image si_rmse (trainables.scores), for the intervals
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))



def mid_epoch_result(state: TrialState, trial: TrialInfo, preempted: bool) -> dict[str, Any]:
    """A mid-epoch checkpoint's result row, for resuming and never scored: ``mid_epoch`` marks
    it, and it has no ``epoch`` (the leaderboard and ASHA count epochs). ``si_rmse`` is NaN: Tune
    keeps the checkpoints with the best si_rmse (``CheckpointConfig``), so NaN ranks this one
    last and Tune drops it once a newer one exists, never in place of a scored epoch; Tune's
    searchers read the metric from every result."""
    return {"mid_epoch": True, "preempted": preempted, "epoch_in_progress": state.epoch,
            "epoch_step": state.progress.step, "si_rmse": float("nan"), "train_seconds": state.train_seconds,
            "hostname": platform.node(), "node_id": _node_id(), "device_name": trial.provenance["device"]}


class MidEpochCheckpoints:
    """``train_one_epoch``'s checkpointer: a resumable checkpoint every ``checkpoint_steps``
    steps or ``checkpoint_minutes`` minutes of an epoch, and one at the next step after a
    preemption notice (SIGTERM, ``trainables.preemption``), after which the trial stops with
    ``TrialPreempted`` and Tune retries it from there. It also keeps the trial's training clock
    (``start``/``stop``), so a checkpoint's ``train_seconds`` counts the epoch so far."""

    def __init__(self, state: TrialState, trial: TrialInfo, notice: Notice) -> None:
        self.state, self.trial, self.notice = state, trial, notice
        self.mark = time.perf_counter()
        self.last_saved = time.monotonic()

    def start(self) -> None:
        self.mark = time.perf_counter()

    def stop(self) -> None:
        """Add the time since ``start`` (or the last checkpoint) to the state's ``train_seconds``."""
        now = time.perf_counter()
        self.state.train_seconds += now - self.mark
        self.mark = now

    def due(self, done: int, n_steps: int) -> bool:
        """After step ``done`` of ``n_steps``: on notice always (the epoch's last step too, before
        validation); else not at the epoch's end (its own checkpoint follows), and on schedule."""
        cfg = self.trial.cfg
        if self.notice.requested:
            return True
        if done >= n_steps:
            return False
        if cfg.checkpoint_steps and done % cfg.checkpoint_steps == 0:
            return True
        return bool(cfg.checkpoint_minutes) and time.monotonic() - self.last_saved >= 60 * cfg.checkpoint_minutes

    def save(self) -> None:
        self.stop()
        preempted = self.notice.requested
        result = mid_epoch_result(self.state, self.trial, preempted)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp), self.state.state_dict(self.trial.record(result)))
            write_json(Path(tmp) / MID_EPOCH_FILE, result)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        self.last_saved = time.monotonic()
        self.start()  # the report's time is not training time
        if preempted:
            self.notice.handled = True
            raise TrialPreempted(f"preemption notice at epoch {self.state.epoch} step {self.state.progress.step}: "
                                 "checkpointed there, Tune retries the trial from that checkpoint")


def train_depth(config: dict[str, Any], *, data: DataBundle, provenance: dict[str, Any] | None = None,
                plugins: list[str] | tuple[str, ...] = (), eval_sets: tuple[EvalSet, ...] = ()) -> None:
    """Train ``config["arch"]`` on ``data.train``, validate on ``data.val`` every epoch.
    ``provenance`` (the driver's command, versions, commit) goes into every checkpoint together
    with this trial's own versions and device. ``plugins`` (``depth-grid run --plugins``) are imported
    first, so their architectures are registered in this process too. ``eval_sets``
    (``depth-grid run --eval-data``) are scored at the last epoch (``trainables.eval_sets``).
    With ``world_size`` N > 1 (``--gpus-per-trial N``) this process is rank 0 of N: it starts the
    others (``follow``, ``trainables.distributed``) and alone validates, reports and checkpoints."""
    load_plugins(plugins)
    # One line per checkpoint from Ray's storage, in every trial, every epoch: the trial table
    # already shows progress.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    try:
        cfg = TrialConfig.from_dict(config)
    except ConfigError as e:
        # Retrying cannot fix a setting: report the error once and end the trial, instead of
        # raising into Tune's --max-failures retries. The leaderboard shows it as an error.
        tune.report({"si_rmse": float("nan"), "config_error": str(e)})
        return
    check_retries()  # the driver gave up on this trial (--max-failures used up): end it here
    resolve_vml()  # exact CPU exp/log/sqrt from the first parallel call on (trainables.vml)
    torch.manual_seed(cfg.seed)
    device = pick_device()
    cfg = cfg.on_device(device.type)  # on a GPU, the probed micro-batch per arch (every rank alike: follow)
    # Every batch has the trial's image_size: cuDNN times its kernels for that shape once and keeps
    # the fastest (a GPU run is not bit-reproducible anyway; the exact resume is the CPU's).
    torch.backends.cudnn.benchmark = device.type == "cuda"
    payload = {"entry": "trainables.follower:follow", "config": config, "data": data, "plugins": list(plugins)}
    with data_parallel(cfg.world_size, device, payload) as ranks:
        _lead(cfg, data, device, ranks, provenance, eval_sets)


def _lead(cfg: TrialConfig, data: DataBundle, device: torch.device, ranks: Ranks,
          provenance: dict[str, Any] | None, eval_sets: tuple[EvalSet, ...]) -> None:
    """Rank 0's training (the only rank's, usually): every epoch validated, reported and checkpointed."""
    train_loader, val_loader = make_loaders(cfg, data, ranks)
    state, weights = trial_state(cfg, train_loader, device, last_checkpoint(), ranks)  # new, or resumed
    params = sum(p.numel() for p in state.model.parameters())
    trial = TrialInfo(cfg, device, weights, params, trial_provenance(provenance, device))
    # purge_step drops events a killed run logged after its last checkpoint: no duplicate epochs.
    writer = SummaryWriter(log_dir=str(_trial_dir()), purge_step=state.epoch + 1)
    write_hparams(writer, cfg)
    try:
        with listening(cfg.preemption_notice) as notice:  # SIGTERM (or the cloud's notice): checkpoint, stop
            best_scores = BestScores(val_loader, cfg, device)
            checkpoints = MidEpochCheckpoints(state, trial, notice)
            infer_ms = None  # measured once, after the first epoch: the leaderboard's speed column

            def validate(train_loss: float) -> None:
                nonlocal infer_ms
                metrics, panels = evaluate(state.eval_model, val_loader, cfg, device, n_examples=cfg.log_images)
                checkpoints.stop()
                result = epoch_result(state, trial, train_loss, metrics)
                infer_ms = infer_ms or inference_ms(state.eval_model, cfg.image_size, device)
                result["infer_ms"] = round(infer_ms, 3)
                if state.epoch == cfg.epochs:  # the trial ends: its best weights on each --eval-data set
                    result.update(score_eval_sets(eval_sets, state.eval_model, metrics, cfg, device, state.epoch))
                log_epoch(writer, state, result, metrics, panels)
                report(state, trial, result, best_scores(state.eval_model, metrics))
                checkpoints.start()  # the report's time is not training time

            checkpoints.start()
            train_epochs(state, train_loader, cfg, device, ranks, checkpoints, validate)
    finally:
        writer.close()
        release_memory()


# Tune builds the trainable class from these mixins (tune.with_parameters keeps them): its actor
# installs the SIGTERM handler on its main thread, which this function's thread cannot.
train_depth.__mixins__ = (InstallsSigtermHandler,)


def release_memory() -> None:
    """Hand freed heap back to the system: Tune reuses the trial process, and glibc otherwise
    keeps a big model's freed blocks, so the next trial's peak stacks on this one's (measured:
    12-16 GB instead of ~6 GB after mask2former_swin at 426x560 on the CPU)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass
