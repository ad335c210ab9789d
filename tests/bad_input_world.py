"""The shape of ``tests/test_bad_input.py``'s tables: one ``Case`` per realistic mistake.

A row says what the user typed (``argv``, a function of the ``World``: the shared dataset
``w.data``, the finished experiment ``w.exp``, and the case's own empty folder ``w.here``), what
to make first (``setup``: bad files in ``w.here``), the exit code, a text the output must hold
(the file, setting or address), and whether it must fail before Ray starts (``fast``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class World:
    root: Path  # holds the dataset and the results
    data: Path  # a synthetic competition-layout dataset (6 scenes x 4 views, 64x80)
    exp: Path  # results/base: a finished smoke experiment on data
    here: Path | None = None  # the case's own folder (the command's working directory)

    def for_case(self, here: Path) -> World:
        return dataclasses.replace(self, here=here)


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[World], list]
    code: int = 2
    named: str | Callable[[World], str] = "error"
    setup: Callable[[World], None] | None = None
    fast: bool = True  # fails before Ray starts, within test_bad_input.FAST_S
    may_add: bool = False  # may leave new files (a run that started); never change old ones
    env: Callable[[World], dict] = field(default=lambda w: {})


def _text(name: str, content: str) -> Callable[[World], None]:
    def make(w: World) -> None:
        (w.here / name).write_text(content)
    return make


def text_file(name: str, content: str) -> Callable[[World], None]:
    """A ``setup`` that writes ``content`` to ``w.here / name``."""
    def make(w: World) -> None:
        (w.here / name).write_text(content)
    return make
