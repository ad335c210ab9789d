"""Hugging Face snapshots for tests, written the way the released ones are read.

- ``save_snapshot``: a ``save_pretrained`` folder (what ``pretrained=DIR`` reads), optionally in
  another dtype and without the weights the released checkpoints lack.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

# Weights the released checkpoints do not hold: BN step counters (SegFormer's were converted
# from mmseg, which saved none) and the Swin backbone's final norm (Mask2Former never uses it).
NO_BN_COUNTERS = "num_batches_tracked"
SWIN_NORM = "encoder.swin.layernorm."


def save_snapshot(model: nn.Module, folder: Path, *, drop: tuple[str, ...] = (),
                  dtype: torch.dtype | None = None) -> Path:
    """``model.save_pretrained(folder)``, converted to ``dtype`` (in place) if given, without
    weights whose name contains one of ``drop``. Returns ``folder``."""
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder)
    if drop:
        weights = folder / "model.safetensors"
        kept = {k: v for k, v in load_file(weights).items() if not any(d in k for d in drop)}
        save_file(kept, weights, metadata={"format": "pt"})
    return folder
