"""Argument types shared by the command-line entry points."""

from __future__ import annotations

import argparse


class SizeError(ValueError, argparse.ArgumentTypeError):
    """A bad ``HxW`` image size. A ``ValueError`` for the library and the typer commands, and an
    ``ArgumentTypeError`` so that the commands still on argparse show its message as it is."""


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


_PROG: list[str] = []  # set by depth-grid (grid.cli) to "depth-grid <command>" for argparse commands


def prog_name(module_prog: str) -> str:
    """The program name in help and usage: ``depth-grid run`` under the console command,
    ``python -m grid.run`` when the module is run itself."""
    return _PROG[-1] if _PROG else module_prog
