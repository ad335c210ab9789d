"""Per-image validation scores of a trial's best epoch, stored with its checkpoint.

The leaderboard's confidence intervals (``grid.experiment.stats``) compare two trials image by
image: both trials' best checkpoints scored the same validation images, so the paired difference
needs no re-run. ``BestScores`` scores the validation images again, one by one, only when an
epoch is at least as good as the trial's best so far: Tune keeps the best checkpoints by
si_rmse, so the best one always holds its scores (``per_image.json``, beside ``metrics.json``),
and an epoch that does not improve costs nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from trainables.config import TrialConfig
from trainables.io import write_json
from trainables.loop import _autocast, _to_device, trial_scoring
from trainables.metrics_torch import DeviceMetricAccumulator
from trainables.recipe import forward_log_tta

SCORES_FILE = "per_image.json"  # {"metric": "si_rmse", "scores": {item name: score}}


@torch.inference_mode()
def image_scores(model: torch.nn.Module, loader: DataLoader, cfg: TrialConfig,
                 device: torch.device) -> dict[str, float]:
    """The si_rmse of each image of ``loader`` that has a valid target pixel, keyed by item name,
    predicted and scored as ``trainables.loop.evaluate`` does (their mean is its si_rmse): in torch
    on ``device``, read back once at the end."""
    model.eval()
    acc = DeviceMetricAccumulator(trial_scoring(cfg, model, getattr(loader.dataset, "spec", None)))
    names: list[str] = []
    for batch in loader:
        image = _to_device(batch["image"], cfg, device)  # (B, 3, h, w)
        with _autocast(cfg, device):
            log_pred = forward_log_tta(model, image, cfg.tta)  # (B, 1, h, w)
        for i, name in enumerate(batch["name"]):
            target = batch["depth"][i]  # (1, H, W) native
            pred = F.interpolate(log_pred[i : i + 1].float(), size=target.shape[-2:], mode="bilinear",
                                 align_corners=False).exp()[0]
            acc.update(pred[None], target[None])
            names.append(name)
    # An image without a valid target pixel has no row: evaluate skips it too.
    return {name: row["si_rmse"] for name, row in zip(names, acc.image_rows(), strict=True) if row is not None}


class BestScores:
    """Per-image scores of each epoch whose validation si_rmse ties or beats the trial's best so
    far (a resumed trial starts over: its first epoch is scored again), else None."""

    def __init__(self, loader: DataLoader, cfg: TrialConfig, device: torch.device) -> None:
        self.loader, self.cfg, self.device = loader, cfg, device
        self.best = math.inf

    def __call__(self, model: torch.nn.Module, metrics: dict[str, float]) -> dict[str, float] | None:
        score = metrics.get("si_rmse", math.nan)
        if not score <= self.best:  # NaN never improves
            return None
        self.best = score
        # A DataLoader draws its base seed from torch's global generator: keep that state, so
        # scoring changes nothing the training draws next (dropout, a resumed trial's RNG).
        with torch.random.fork_rng(devices=[]):
            return image_scores(model, self.loader, self.cfg, self.device)


def write_scores(directory: Path, scores: dict[str, float] | None) -> None:
    """``per_image.json`` in a checkpoint folder; nothing when the epoch was not scored."""
    if scores:
        write_json(Path(directory) / SCORES_FILE, {"metric": "si_rmse", "scores": scores})
