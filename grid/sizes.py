"""Image sizes as users write them: ``HxW``."""

from __future__ import annotations


class SizeError(ValueError):
    """A bad ``HxW`` image size."""


def parse_size(text: str, *, minimum: int = 1) -> tuple[int, int]:
    """``"HxW"`` (e.g. ``426x560``) -> ``(H, W)``, each at least ``minimum``.

    Raises:
        SizeError: (a ``ValueError``) ``text`` is not ``HxW`` or is below ``minimum``.
    """
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SizeError(f"image size must look like 426x560 (HxW), got {text!r}") from None
    if h < minimum or w < minimum:
        raise SizeError(f"image size must be at least {minimum}x{minimum}, got {text!r}")
    return h, w
