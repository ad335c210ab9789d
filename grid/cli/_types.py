"""Option types shared by the commands: ``--size HxW`` and ``--crop``.

Each parser turns the library's ``ValueError`` into ``typer.BadParameter``, so a bad value is a
usage error naming the option: ``depth-grid synth: error: Invalid value for '--size': ...``.
"""

from __future__ import annotations

from typing import NamedTuple

import typer

from grid.sizes import parse_size

CROP_HELP = "eigen (NYU rows 45:471, cols 41:601), none, or TOP,BOTTOM,LEFT,RIGHT"


class ImageSize(NamedTuple):
    """An image size (a tuple, so the library takes it as ``(H, W)``)."""

    height: int
    width: int


class CropBox(NamedTuple):
    """A crop box in pixels: rows ``top:bottom``, columns ``left:right``."""

    top: int
    bottom: int
    left: int
    right: int


def image_size(text: str) -> ImageSize:
    """``--size``: ``"426x560"`` -> ``ImageSize(426, 560)``."""
    try:
        return ImageSize(*parse_size(text))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def crop_box(text: str) -> CropBox | None:
    """``--crop``: ``eigen``, ``none`` (-> None) or ``TOP,BOTTOM,LEFT,RIGHT`` -> the crop box."""
    from trainables.data import parse_crop

    crop: str | tuple[int, ...] = text
    if text not in ("eigen", "none"):
        try:
            crop = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise typer.BadParameter(f"crop must be 'eigen', 'none' or TOP,BOTTOM,LEFT,RIGHT, got {text!r}") from None
    try:
        box = parse_crop(crop)
    except ValueError as e:  # the library's DataError: not four values, or not top < bottom, left < right
        raise typer.BadParameter(str(e)) from None
    return None if box is None else CropBox(*box)
