"""The one error map of ``depth-grid``: a known exception becomes one line on stderr and an exit
code, never a traceback. An exception the map does not know is a bug and keeps its traceback.

Exit codes: 0 done; 1 the job ran and failed (a failed trial, a bad item in a checked dataset);
2 bad input (an option, a file, a folder, an address, missing weights); 130 interrupted (Ctrl-C:
``depth-grid run`` names the trials it stopped; elsewhere typer turns the KeyboardInterrupt into
this code).

The map names classes as ``"module:Class"`` and finds them in ``sys.modules`` only: an exception
of a class can exist only once its module is loaded, so the map imports nothing and
``depth-grid --help`` loads neither torch nor Ray. ``tests/test_cli.py`` checks that every name
still resolves to an exception class.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

import typer

from grid.cli.context import PROG

FAILED = 1
BAD_INPUT = 2
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended


def one_line(text: object) -> str:
    """``text`` on one line: its non-empty lines, stripped, joined by a space."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _message(error: BaseException) -> str:
    return one_line(error)


def _os_error(error: OSError) -> str:
    """``[Errno 2] No such file or directory: 'x'`` -> ``x: No such file or directory``."""
    if error.filename is not None and error.strerror:
        return f"{os.fsdecode(error.filename)}: {error.strerror}"
    return one_line(error)


def _loaded_file(error: BaseException) -> str | None:
    """The file ``torch.load`` was reading when ``error`` was raised, if it was."""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_globals.get("__name__") == "torch.serialization" and frame.f_code.co_name == "load":
            source = frame.f_locals.get("f")
            if isinstance(source, (str, os.PathLike)):
                return os.fsdecode(source)
    return None


def _unpickling(error: BaseException) -> str:
    """torch's unpickling errors run to a page; the first line and the file are what matter."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    source = _loaded_file(error)
    return f"{source + ': ' if source else ''}not a readable checkpoint ({first or type(error).__name__})"


# "module:Class" -> (exit code, the one line). First match wins: subclasses before their bases.
ERRORS: dict[str, tuple[int, Callable]] = {
    # the project's own errors: their messages name the file, setting or name already
    "grid.inference.evaluate:PredictionError": (FAILED, _message),  # scored, and some predictions are bad
    "trainables.data:DataError": (BAD_INPUT, _message),
    "trainables.config:ConfigError": (BAD_INPUT, _message),
    "trainables.plugins:PluginError": (BAD_INPUT, _message),
    "trainables.weights:WeightsUnavailableError": (BAD_INPUT, _message),
    "trainables.models.registry:PretrainedWeightsError": (BAD_INPUT, _message),
    "grid.experiment.plan:ExperimentError": (BAD_INPUT, _message),
    "grid.experiment.leaderboard:LeaderboardError": (BAD_INPUT, _message),
    "grid.experiment.remote:RemoteError": (BAD_INPUT, _message),
    "grid.inference.checkpoints:CheckpointError": (BAD_INPUT, _message),
    "grid.inference.export:ExportError": (BAD_INPUT, _message),
    # other libraries' errors about the user's files
    "pickle:UnpicklingError": (BAD_INPUT, _unpickling),
    "PIL:UnidentifiedImageError": (BAD_INPUT, _message),  # "cannot identify image file 'x.png'"
    # Python's, where a command's input is the cause
    "builtins:ConnectionError": (BAD_INPUT, _message),  # Ray: "Failed to connect to Ray cluster at ..."
    "builtins:FileNotFoundError": (BAD_INPUT, _os_error),
    "builtins:FileExistsError": (BAD_INPUT, _os_error),
    "builtins:IsADirectoryError": (BAD_INPUT, _os_error),
    "builtins:NotADirectoryError": (BAD_INPUT, _os_error),
    "builtins:PermissionError": (BAD_INPUT, _os_error),
    "builtins:ValueError": (BAD_INPUT, _message),  # a library function's check of its arguments
}


def _click_class(name: str) -> type[Exception]:
    """A class of the click typer runs on (its own copy in newer typer, click itself in older),
    found from the public ``typer.BadParameter``."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


ClickException = _click_class("ClickException")
UsageError = _click_class("UsageError")


def known(error: BaseException) -> tuple[int, Callable] | None:
    """``(exit code, render)`` for ``error``, or None when the map does not know it."""
    for name, entry in ERRORS.items():
        module, _, cls_name = name.partition(":")
        cls = getattr(sys.modules.get(module), cls_name, None)
        if cls is not None and isinstance(error, cls):
            return entry
    return None


def fail(message: str, code: int = FAILED) -> int:
    """Print ``message`` as the running command's one-line error and return ``code``: for a
    command that ran and failed (trials in error: 1)."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return code


def report(error: Exception) -> int | None:
    """Print ``error`` as one line on stderr and return its exit code; None when it is unknown.

    A usage error inside a command exits with ``SystemExit(2)``, as argparse's did; at the top
    (an unknown or missing command) it returns 2, as the old dispatcher did. A bare
    ``depth-grid`` prints the help.
    """
    if isinstance(error, UsageError):
        if type(error).__name__ == "NoArgsIsHelpError":  # click puts the help in its message
            print(error.format_message())
            return BAD_INPUT
        ctx = error.ctx
        path = ctx.command_path if ctx is not None else PROG
        message = one_line(error.format_message()).replace("Value error, ", "")  # pydantic's prefix
        print(f"{path}: error: {message} (see {path} --help)", file=sys.stderr)
        if ctx is not None and ctx.parent is not None:
            raise SystemExit(BAD_INPUT)
        return BAD_INPUT
    if isinstance(error, ClickException):
        return fail(error.format_message(), error.exit_code)
    entry = known(error)
    if entry is None:
        return None
    code, render = entry
    return fail(render(error), code)
