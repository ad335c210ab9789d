"""``depth-grid synth``: render the built-in synthetic scenes (``grid.synth.generate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from grid.cli._types import ImageSize, image_size


def synth(
    out: Annotated[Path, typer.Option(help="output folder (new or empty)")],
    scenes: Annotated[int, typer.Option(help="rooms to render")] = 10,
    views: Annotated[int, typer.Option(help="views per scene")] = 8,
    size: Annotated[ImageSize, typer.Option(parser=image_size, metavar="HxW", help="image size")] = "426x560",
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    motion: Annotated[Literal["jitter", "drift"], typer.Option(
        help="views of a scene: small camera moves (jitter) or a walk and pan (drift)")] = "jitter",
    workers: Annotated[int, typer.Option(help="processes rendering scenes in parallel")] = 1,
) -> None:
    """Render synthetic indoor scenes (RGB + exact depth in metres) in the competition layout.

    \b
    examples:
      depth-grid synth --out data/scenes
      depth-grid synth --out data/walk --scenes 16 --views 6 --size 240x320 --motion drift --workers 4
    """
    from grid.synth import generate

    written = generate(out, scenes=scenes, views=views, size=size, seed=seed, motion=motion, workers=workers)
    print(f"wrote {scenes * views} items to {written}")
