"""Inference time per image, measured inside the trial on the device it trains on.

The leaderboard's ``infer_ms`` column: what one image at the experiment's input size costs the
model in eval mode, the way ``predict`` runs it (batch 1, no gradients), so that quality can be
weighed against speed (``depth-grid figures``: the Pareto front). Wall time, synchronised on CUDA.
"""

from __future__ import annotations

import statistics
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def inference_ms(model: torch.nn.Module, image_size: tuple[int, int] | list[int], device: torch.device, *,
                 repeats: int = 5, warmup: int = 2) -> float:
    """Median milliseconds of one forward pass on one ``image_size`` image on ``device``, after
    ``warmup`` passes (cuDNN's algorithm search, lazy inits). The model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *image_size, device=device)  # (1, 3, H, W): the time does not depend on the values
    try:
        for _ in range(warmup):
            model(x)
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    return statistics.median(times)
