"""Where the commands may write: the one rule for every output of ``depth-grid predict``,
``submit``, ``evaluate --json``, ``figures`` and ``export``.

1. **Never over an input.** An output is refused, ``--overwrite`` or not, when it would replace a
   file the command reads: an item's RGB or depth file (for a test list, where its depth file
   would be: that is where ground truth lives), the list, an experiment's records, a checkpoint,
   a prediction being scored. Nor may it replace an existing file in a folder the command reads
   (the dataset's folder, the experiment folder and its Tune storage, a checkpoint's folder, the
   predictions being scored) or in any experiment or checkpoint folder, unless depth-grid wrote
   that file there itself.
2. **Never into a record folder.** An output folder that is an experiment folder (it holds
   ``experiment.json``) or a trial's checkpoint folder (it holds ``checkpoint.pt``) is refused.
3. **Never a foreign file.** Any other existing file is replaced only when depth-grid wrote it
   (it is listed in its folder's ``.depth-grid-outputs.json``, or it is a JSON that says so in
   its ``written_by`` key: ``evaluate --json`` leaves no other file), or with ``--overwrite``.
4. **Before any work.** Each command checks every output it will write before it loads a model,
   so a refusal costs a second and changes nothing. Files are then written atomically
   (``trainables.io.atomic_write``) and added to their folder's list (``recorded``).

A refusal is an ``OutputError`` (a ``ValueError``: one line, exit 2) naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.io import write_json

if TYPE_CHECKING:
    from grid.experiment.record import Experiment
    from grid.inference.inputs import Inputs

MANIFEST = ".depth-grid-outputs.json"  # in each folder depth-grid writes to: the files it wrote there
WRITTEN_BY = "written_by"  # the key that marks a JSON output as depth-grid's own (``marked``)
RECORD_FILES = ("experiment.json", "leaderboard.csv", "leaderboard.md", "ensemble.json")
EXPORT_FILES = ("config.json", "model.safetensors", "README.md")  # what grid.inference.export writes
CONFIG_KEYS = {"arch", "kwargs", "image_size"}  # a config.json with these was written by DepthGridModel


class OutputError(ValueError):
    """An output that may not be written; the message names the file and why."""


def _norm(path: str | os.PathLike[str]) -> Path:
    """``path`` absolute with its folder's links resolved (the file itself may not exist yet)."""
    path = Path(path).expanduser()
    return Path(os.path.realpath(path.parent)) / path.name


@dataclass
class Reads:
    """What a command reads: files it must never replace, and folders in which it must not
    replace an existing file. Each maps a path to what it is, for the message."""

    files: dict[Path, str] = field(default_factory=dict)
    folders: dict[Path, str] = field(default_factory=dict)

    def add_files(self, paths: Iterable[str | os.PathLike[str]], what: str) -> Reads:
        for p in paths:
            self.files.setdefault(_norm(p), what)
        return self

    def add_folder(self, path: str | os.PathLike[str], what: str) -> Reads:
        self.folders.setdefault(Path(os.path.realpath(Path(path).expanduser())), what)
        return self

    def add_checkpoints(self, paths: Iterable[str | os.PathLike[str]]) -> Reads:
        for p in paths:
            if "://" in str(p):  # in a bucket: nothing here to overwrite (its fetched copy is a cache)
                continue
            self.add_files([p], "a checkpoint").add_folder(Path(p).parent, "the checkpoint's folder")
        return self

    def add_inputs(self, found: Inputs) -> Reads:
        """The items' files, and for a list its file and the dataset folder."""
        self.add_files((it.rgb for it in found.items), "an input image")
        if found.list_path is not None:
            self.add_files((it.depth for it in found.items), "a ground-truth depth file")
            self.add_files([found.list_path], "the list file")
            self.add_folder(found.spec.root, "the dataset folder")
        return self

    def add_experiment(self, experiment: Experiment | None, *, folder: bool = True) -> Reads:
        """The experiment's records, its best trials' checkpoints, and (``folder``) its folder
        and local Tune storage."""
        if experiment is None:
            return self
        self.add_files((experiment / name for name in RECORD_FILES), "an experiment record")
        split = experiment.record.get("split")
        if split:
            named = Path(split).expanduser()
            self.add_files([named if named.is_absolute() else experiment / named], "the experiment's split")
        from grid.experiment.leaderboard import LeaderboardError

        with contextlib.suppress(LeaderboardError, OSError, ValueError, AttributeError):  # no leaderboard yet
            self.add_checkpoints(str(c) for c in experiment.saved_leaderboard().checkpoint.dropna() if str(c))
        if folder:
            self.add_folder(experiment.path, "the experiment folder")
        storage = str(experiment.record.get("storage") or "")
        if storage and "://" not in storage:
            self.add_folder(storage, "the experiment's Tune storage")
        return self

    def where(self, path: Path) -> tuple[Path, str] | None:
        """The read folder ``path`` lies in, if any."""
        return next(((f, what) for f, what in self.folders.items() if path.is_relative_to(f)), None)


RECORD_FOLDERS = (("experiment.json", "an experiment folder"), ("checkpoint.pt", "a trial's checkpoint folder"))


def _record_folder(folder: Path) -> str | None:
    """What ``folder`` is when it holds depth-grid's records (an experiment's, a trial's)."""
    return next((what for record, what in RECORD_FOLDERS if (folder / record).is_file()), None)


def _manifest(folder: Path) -> set[str]:
    try:
        names = json.loads((folder / MANIFEST).read_text()).get("files", [])
        return {n for n in names if isinstance(n, str)}
    except (OSError, ValueError, AttributeError):  # none yet, or not ours: nothing is listed
        return set()


def marked(obj: dict, command: str) -> dict:
    """A JSON output's content marked as written by ``depth-grid COMMAND``: a re-run may replace it."""
    return {**obj, WRITTEN_BY: f"depth-grid {command}"}


def _is_marked(path: Path) -> bool:
    if path.suffix != ".json" or path.stat().st_size > 1_000_000:  # a marked output is a few lines
        return False
    try:
        return str(json.loads(path.read_text()).get(WRITTEN_BY, "")).startswith("depth-grid")
    except (OSError, ValueError, AttributeError):
        return False


def check_folder(folder: str | os.PathLike[str], *, option: str = "--out", advice: str | None = None) -> Path:
    """``folder`` as an output folder: not a file, not an experiment or checkpoint folder.
    ``advice`` ends the message (default: choose another ``option``)."""
    path = Path(os.path.realpath(Path(folder).expanduser()))
    advice = advice or f"choose another {option}"
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: {option} is an existing file where a folder goes; {advice}")
    what = _record_folder(path)
    if what is not None:
        raise OutputError(f"{path}: {option} is {what}, which depth-grid does not write into; {advice}")
    return path


def check_outputs(outputs: Iterable[str | os.PathLike[str]], reads: Reads | None = None, *,
                  overwrite: bool = False, option: str = "--out", advice: str | None = None) -> list[Path]:
    """The planned output files, checked by the rule above (before any work); returns them
    normalised. ``OutputError`` names the first that may not be written; ``advice`` ends its
    message (default: choose another ``option``)."""
    reads = reads or Reads()
    advice = advice or f"choose another {option}"
    planned = [_norm(p) for p in outputs]
    inodes: dict[tuple[int, int], str] | None = None
    manifests: dict[Path, set[str]] = {}
    for path in planned:
        what = reads.files.get(path)
        exists = path.exists() or path.is_symlink()
        if what is None and exists:
            if inodes is None:  # the same file under another name: a hard link or a link to it
                inodes = {}
                for p, w in reads.files.items():
                    with contextlib.suppress(OSError):
                        st = p.stat()
                        inodes.setdefault((st.st_dev, st.st_ino), w)
            with contextlib.suppress(OSError):
                st = path.stat()
                what = inodes.get((st.st_dev, st.st_ino))
        if what is not None:
            raise OutputError(f"{path}: {option} would replace {what} this command reads; {advice}")
        if not exists:
            continue
        if path.is_dir():
            raise OutputError(f"{path}: {option} would replace a folder with a file; {advice}")
        if path.name in manifests.setdefault(path.parent, _manifest(path.parent)) or _is_marked(path):
            continue  # depth-grid's own earlier output
        record = _record_folder(path.parent)  # another experiment's records than the one read: the same
        inside = reads.where(path) or ((path.parent, record) if record else None)
        if inside is not None:
            folder, what = inside
            raise OutputError(f"{path}: exists in {what} ({folder}) and depth-grid did not write it: it is not "
                              f"replaced, --overwrite or not; {advice}")
        if not overwrite:
            raise OutputError(f"{path}: exists and depth-grid did not write it; pass --overwrite to replace it, "
                              f"or {advice}")
    return planned


def remember(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Add the files just written to their folders' ``.depth-grid-outputs.json``."""
    by_folder: dict[Path, set[str]] = {}
    for p in paths:
        path = _norm(p)
        by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in by_folder.items():
        known = _manifest(folder)
        if not names <= known:
            write_json(folder / MANIFEST, {WRITTEN_BY: "depth-grid", "files": sorted(known | names)})


@contextlib.contextmanager
def recorded() -> Iterator[list[Path]]:
    """Collect the paths written inside the block; they are remembered on the way out, also
    when the block fails (a re-run may then replace what it got to)."""
    written: list[Path] = []
    try:
        yield written
    finally:
        remember(written)


def is_export(path: Path) -> bool:
    """A folder written by ``DepthGridModel.save_pretrained`` (``grid.inference.export``)."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file() and (path / "model.safetensors").is_file()):
        return False
    try:
        return CONFIG_KEYS <= set(json.loads(config.read_text()))
    except (ValueError, TypeError):
        return False


def export_outputs(out: str | os.PathLike[str], experiment: Experiment) -> Path:
    """``depth-grid export --out``: not over the experiment's records or checkpoints, not into
    its folder, its storage or a checkpoint folder, and a new, empty or earlier export folder
    (the export's own rule, ``grid.inference.export``, checked here before torch loads)."""
    folder = check_folder(out)
    check_outputs((folder / name for name in EXPORT_FILES), Reads().add_experiment(experiment), overwrite=True)
    if folder.is_dir() and not is_export(folder) and any(folder.iterdir()):
        raise OutputError(f"{folder}: exists and is not an earlier export; choose a new or empty folder")
    return folder
