"""Extra evaluation sets (``depth-grid run --eval-data NAME=DIR``), scored inside the trial as it ends.

At the last epoch, before that epoch's report, the trial takes its best weights (by validation
``si_rmse``: this epoch's, or those of the best checkpoint it stored before) and scores them on
each set with the validation code itself (``trainables.loop.evaluate``: native resolution,
every metric). The scores go into the last report and its ``metrics.json`` as
``<metric>@<NAME>``, with ``eval_epoch`` (the epoch whose weights were scored); the leaderboard
reads them from there. The validation split stays the selection metric.

Why before the last report: a scheduler (ASHA) stops a trial as soon as it reports its last
epoch, so nothing after that report is sure to run. And it survives resume: a trial restored
before its last report trains that epoch again and scores; one restored after it has nothing
left to do, so what was scored is never scored twice. A trial that a scheduler stops early
never reaches its last epoch and is not scored.
"""

from __future__ import annotations

import copy
import io
import json
import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import torch

from trainables.config import TrialConfig
from trainables.data import DatasetSpec, Item
from trainables.loop import eval_loader, evaluate, trial_scoring


@dataclass(frozen=True)
class EvalSet:
    """One ``--eval-data`` set: its name, how to read it, its items (paths, not pixels), and
    its evaluation protocol (``trainables.protocols``; the trial's ``align`` applies too)."""

    name: str
    spec: DatasetSpec
    items: tuple[Item, ...]
    protocol: str = "none"


def eval_key(metric: str, name: str) -> str:
    """The result and leaderboard key of ``metric`` on set ``name``: ``si_rmse@tum``."""
    return f"{metric}@{name}"


def _stored_best() -> tuple[dict[str, Any] | None, float, int | None]:
    """The model weights, validation si_rmse and epoch of the best checkpoint this trial has
    stored (Tune's storage, local or remote), or ``(None, inf, None)`` when it has none."""
    import warnings

    from ray import tune

    try:
        with warnings.catch_warnings():  # outside a trial Ray warns and returns None
            warnings.simplefilter("ignore")
            storage = tune.get_context().get_storage()
        fs, root = storage.storage_filesystem, storage.trial_fs_path
    except Exception:  # outside Tune (a direct call): no stored checkpoints
        return None, math.inf, None
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    best, best_score, best_epoch = None, math.inf, None
    for d in sorted(i.path for i in infos if i.type == pafs.FileType.Directory):
        if not PurePosixPath(d).name.startswith("checkpoint_"):
            continue
        try:
            with fs.open_input_stream(f"{d}/metrics.json") as fh:
                metrics = json.loads(fh.read())
        except (OSError, ValueError):
            continue
        score = metrics.get("si_rmse", math.inf)
        if score < best_score:  # strict: the earliest on ties, as the leaderboard's choice
            best, best_score, best_epoch = d, score, metrics.get("epoch")
    if best is None:
        return None, math.inf, None
    with fs.open_input_stream(f"{best}/checkpoint.pt") as fh:
        state = torch.load(io.BytesIO(fh.read()), map_location="cpu", weights_only=True)
    return state["model"], best_score, best_epoch


def score_eval_sets(eval_sets: tuple[EvalSet, ...] | list[EvalSet], model: torch.nn.Module,
                    val_metrics: dict[str, float], cfg: TrialConfig, device: torch.device,
                    epoch: int) -> dict[str, float]:
    """``{"eval_epoch": E, "<metric>@<NAME>": value, "images@<NAME>": n}`` for the best weights
    so far: ``model`` (validated at ``epoch`` with ``val_metrics``) unless a stored checkpoint
    scored better on validation. Empty when there is no set."""
    if not eval_sets:
        return {}
    stored, stored_score, stored_epoch = _stored_best()
    scored, scored_epoch = model, epoch
    if stored is not None and not val_metrics.get("si_rmse", math.inf) < stored_score:
        scored, scored_epoch = copy.deepcopy(model), stored_epoch
        scored.load_state_dict(stored)
    out: dict[str, float] = {"eval_epoch": scored_epoch}
    for s in eval_sets:
        scoring = trial_scoring(cfg, scored, s.spec, protocol=s.protocol)
        metrics, _ = evaluate(scored, eval_loader(cfg, list(s.items), s.spec), cfg, device, scoring=scoring)
        out.update({eval_key(k, s.name): v for k, v in metrics.items()})
        out[eval_key("images", s.name)] = len(s.items)
    return out
