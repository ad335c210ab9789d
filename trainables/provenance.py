"""What produced a result: the command line, package versions, the git commit, the device.

``depth-grid run`` records ``provenance()`` in ``experiment.json`` and hands it to every trial, which
adds its own versions and device (a worker node may differ from the driver) to each checkpoint.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "ray", "transformers", "timm", "segmentation-models-pytorch", "depth-grid")


def versions() -> dict[str, str | None]:
    """Python's and each package's installed version (None when it is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_state(where: Path | None = None) -> dict[str, Any]:
    """The checkout's commit and whether its tracked files differ from it; Nones outside one
    (an installed wheel, a cluster node that received the files without ``.git``)."""
    where = where or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def provenance(command: list[str] | None = None) -> dict[str, Any]:
    """The driver's record: command line (default: this process's), versions, git state."""
    command = command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {"command": list(command), "versions": versions(), "git": git_state(), "host": platform.node()}


def device_name(device: torch.device) -> str:
    """``cpu`` or e.g. ``cuda:0 (Tesla T4)``."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
