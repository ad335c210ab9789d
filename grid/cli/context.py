"""The depth-grid command being run: its name for messages, its line for provenance.

Set by ``grid.cli.main`` for the length of one call (a context variable, so nested or
concurrent calls in one process do not mix).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

PROG = "depth-grid"
_ARGV: ContextVar[tuple[str, ...]] = ContextVar("depth_grid_argv", default=())


@contextmanager
def running(argv: Sequence[str]) -> Iterator[None]:
    """``depth-grid ARGV`` is running inside this block."""
    token = _ARGV.set(tuple(argv))
    try:
        yield
    finally:
        _ARGV.reset(token)


def command_name() -> str:
    """``depth-grid run`` while ``depth-grid run ...`` runs; ``depth-grid`` otherwise."""
    from grid.cli import COMMANDS

    argv = _ARGV.get()
    return f"{PROG} {argv[0]}" if argv and argv[0] in COMMANDS else PROG


def command_line() -> list[str]:
    """The command as typed, for provenance: ``["depth-grid run", "--space", "smoke", ...]``."""
    argv, name = _ARGV.get(), command_name()
    return [name, *argv[1:]] if name != PROG else [PROG, *argv]
