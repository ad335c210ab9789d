"""``Experiment``: one experiment folder and everything recorded in it, read without Ray.

The folder is what ``depth-grid run`` writes (``results/<name>/``): ``experiment.json`` (the
typed record below), ``split.json``, ``leaderboard.csv`` / ``.md`` and ``ensemble.json``; the
trials themselves live in Tune's storage, named by the record's ``tune_dirs``. Every command
that uses a trained model (predict, submit, evaluate, figures, export, ``load_model``) takes an
``Experiment``, the role Tune's ``ResultGrid`` plays for Tune's own records.

    >>> exp = Experiment.load("results/smoke")
    >>> exp.leaderboard()[["arch", "si_rmse", "status"]]
    >>> exp.best_checkpoints(3)       # the top-3 finished trials' best checkpoint files
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from grid.experiment.leaderboard import (
    LeaderboardError,
    build_leaderboard,
    experiment_trials,
    read_experiment,
    read_leaderboard,
    write_leaderboard,
)
from grid.experiment.remote import fetch_record, record_uri, upload_record
from trainables.data import DataError, DatasetSpec
from trainables.io import is_uri

if TYPE_CHECKING:
    import pandas as pd

    from grid.split.compute import Split
    from trainables.data import Item


class DataRecord(TypedDict):
    """How the training data was read (``grid.experiment.prepare.spec_record``)."""

    root: str
    format: str
    list_file: str | None
    depth_scale: float
    crop: list[int] | None


class ExperimentRecord(TypedDict, total=False):
    """``experiment.json``, as ``grid.experiment.run.record`` writes it."""

    name: str
    space: str
    storage: str  # Tune storage root: an absolute path or a URI
    signature: dict[str, Any]  # what a resume must match (space, studies, data, split, storage...)
    data: DataRecord
    split: str  # the split JSON, absolute or relative to the experiment folder
    synthetic: bool
    split_method: str
    split_threshold: float
    image_size: list[int]  # [h, w] of the first study
    gpus_per_trial: float
    gpu_rule: str
    tune_dirs: list[str]  # one Tune experiment per study
    provenance: dict[str, Any]
    prices: dict[str, float]  # only when --prices was given
    leakage_audit: dict[str, Any]  # only with --eval-data: threshold, train_images, sets, data (grid.split.audit)


@dataclass(frozen=True)
class Experiment(os.PathLike):
    """An experiment folder. Acts as its path too (``exp / "leaderboard.csv"``, ``open(exp)``)."""

    path: Path
    record: ExperimentRecord
    origin: str | None = None  # the storage URI the record was read from (a local copy is ``path``)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | Experiment) -> Experiment:
        """Read ``path/experiment.json``; ``LeaderboardError`` naming the file when it is not there.
        ``path`` may be a storage URI (``gs://BUCKET/PATH/NAME``, where a run with that
        ``--storage`` keeps its record): it is read through a local copy (``grid.experiment.remote``)."""
        if isinstance(path, Experiment):
            return path
        if is_uri(path):
            origin = str(path).rstrip("/")
            folder = fetch_record(origin)
            return cls(folder, read_experiment(folder), origin)
        folder = Path(path).expanduser()
        return cls(folder, read_experiment(folder))

    # --- the folder as a path ---
    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return self.path / other

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.record.get("name") or self.path.name

    # --- what the trials trained on ---
    @cached_property
    def spec(self) -> DatasetSpec:
        """The training data as the run read it (root, layout, list, crop, depth scale)."""
        data = self.record.get("data")
        if not isinstance(data, dict) or "root" not in data:
            raise DataError(f"{self.path / 'experiment.json'}: no 'data' block with a 'root'")
        crop = data.get("crop")
        if data.get("pack"):  # a pack (its folder or URI): opened through this node's cache
            from grid.experiment.remote import cache_root
            from trainables.packed import open_pack

            return open_pack(data["root"], cache_root(), format=data.get("format"), list_file=data.get("list_file"),
                             depth_scale=data.get("depth_scale"), crop=tuple(crop) if isinstance(crop, list) else crop)
        return DatasetSpec(root=Path(data["root"]), format=data.get("format", "cil"),
                           list_file=data.get("list_file"), depth_scale=data.get("depth_scale", 1.0),
                           crop=tuple(crop) if isinstance(crop, list) else crop)

    @cached_property
    def split(self) -> Split:
        """The split the trials used (the JSON the record names: absolute, or relative to the folder)."""
        from grid.split.compute import Split

        if not self.record.get("split"):
            raise DataError(f"{self.path / 'experiment.json'}: names no split JSON")
        named = Path(self.record["split"]).expanduser()
        candidates = [named] if named.is_absolute() else [self.path / named, self.path.parent / named, named]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DataError(f"{named}: split JSON named in {self.path / 'experiment.json'} not found")
        return Split.from_json(found)

    def validation_items(self) -> list[Item]:
        """The split's validation items, in split order, as the dataset lists them today."""
        from trainables.data import index_dataset

        by_name = {it.name: it for it in index_dataset(self.spec)}
        items = [by_name[v] for v in self.split.val if v in by_name]
        if not items:
            raise DataError(f"{self.path}: no validation item of the split is in {self.spec.list_path}")
        return items

    def training_items(self) -> list[Item]:
        """The split's training items, in split order, as the dataset lists them today."""
        from trainables.data import index_dataset

        by_name = {it.name: it for it in index_dataset(self.spec)}
        return [by_name[n] for n in self.split.train if n in by_name]

    @property
    def image_size(self) -> tuple[int, int] | None:
        """The model input size the run trained at (``None`` in a record that does not say)."""
        size = self.record.get("image_size")
        return (int(size[0]), int(size[1])) if size else None

    # --- the trials and their results ---
    @property
    def trials(self) -> list[str]:
        """Every trial folder of the experiment's Tune runs (paths or URIs), in storage order."""
        return [store.uri(d) for store, dirs in experiment_trials(self.record) for d in dirs]

    def leaderboard(self, *, prices: str | Path | None = None) -> pd.DataFrame:
        """One row per trial, rebuilt from Tune's records in storage, best ``si_rmse`` first."""
        return build_leaderboard(self.path, prices=prices)

    def saved_leaderboard(self) -> pd.DataFrame:
        """``leaderboard.csv`` as the run (or ``depth-grid leaderboard``) last wrote it."""
        return read_leaderboard(self.path)

    def write_leaderboard(self, board: pd.DataFrame | None = None) -> Path:
        """Write ``leaderboard.csv`` and ``.md`` (rebuilt unless ``board`` is given); returns the CSV."""
        csv = write_leaderboard(self.leaderboard() if board is None else board, self.path)[0]
        self.sync()
        return csv

    def sync(self) -> str | None:
        """Copy the record to the run's storage when that is a bucket (``<storage>/<name>/``,
        or where it was read from); returns the URI written, None for a local storage."""
        target = self.origin or (record_uri(self.record["storage"], self.path.name)
                                 if is_uri(self.record.get("storage") or "") else None)
        return upload_record(self.path, target) if target else None

    def top_trials(self, k: int, *, finished: bool = True) -> pd.DataFrame:
        """The saved leaderboard's best ``k`` rows with a checkpoint, best ``si_rmse`` first;
        ``finished``: only trials that ran every epoch (an ensemble's members)."""
        if k < 1:
            raise ValueError(f"--ensemble must be >= 1, got {k}")
        df = self.saved_leaderboard()
        ok = df[df.checkpoint.notna() & (df.checkpoint.astype(str) != "")]
        if finished:
            ok = ok[(ok.status == "finished") & ok.si_rmse.notna()]
            if len(ok) < k:
                raise LeaderboardError(f"{self.path}: --ensemble {k} needs {k} finished trials with a "
                                       f"checkpoint; leaderboard.csv has {len(ok)}")
        elif ok.empty:
            raise LeaderboardError(f"{self.path}: no trial has a checkpoint")
        return ok.sort_values("si_rmse", kind="stable").head(k)

    def trial_row(self, trial: str | None = None) -> dict[str, Any]:
        """The saved leaderboard's row (NaN as None) of ``trial`` (a ``trial_id``), else of the best
        trial with a checkpoint; ``ValueError`` listing the trials that have one when it has none."""
        board = self.saved_leaderboard()
        with_ckpt = board[board.checkpoint.notna() & (board.checkpoint != "")]
        if trial is None:
            (best,) = self.best_checkpoints(1)  # the rule predict --experiment uses
            rows = with_ckpt[with_ckpt.checkpoint.map(lambda c: Path(c) == best)]
        else:
            rows = with_ckpt[with_ckpt.trial_id.astype(str) == str(trial)]
            if rows.empty:
                ids = ", ".join(map(str, with_ckpt.trial_id)) or "none"
                raise ValueError(f"{self}: no trial {trial!r} with a checkpoint; trials with one: {ids}")
        return {k: (None if v != v else v) for k, v in rows.iloc[0].to_dict().items()}

    def best_checkpoints(self, k: int = 1) -> list[Path | str]:
        """The best ``k`` trials' best checkpoint files: for ``k=1`` the best trial that has one,
        whatever its status (what ``--experiment`` means); for more, finished trials (an ensemble).
        A checkpoint in a bucket stays a URI (``checkpoints.checkpoint_file`` fetches it)."""
        return [str(c) if is_uri(c) else Path(c) for c in self.top_trials(k, finished=k > 1).checkpoint]

    def seed_groups(self) -> pd.DataFrame:
        """The saved leaderboard's rows grouped by seed (``--seeds K``): mean and std per metric,
        the bootstrap interval against the best group (``grid.experiment.groups.group_table``)."""
        from grid.experiment.groups import group_table

        return group_table(self.saved_leaderboard())
