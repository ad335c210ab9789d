"""The table of ``tests/test_bad_input.py``: one row per realistic mistake, by command.

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


# ---- usage errors: any command ----------------------------------------------------------------
USAGE = [
    Case("unknown-command", lambda w: ["trian"], named="unknown command 'trian'"),
    Case("run-unknown-option", lambda w: ["run", "--epoch", "3"], named="--epoch"),
    Case("run-epochs-zero", lambda w: ["run", "--space", "smoke", "--epochs", "0"], named="--epochs"),
    Case("run-image-size-word", lambda w: ["run", "--space", "smoke", "--image-size", "big"], named="--image-size"),
    Case("run-format-png", lambda w: ["run", "--format", "png"], named="--format"),
    Case("run-val-fraction", lambda w: ["run", "--space", "smoke", "--val-fraction", "1.5"], named="--val-fraction"),
    Case("run-set-no-value", lambda w: ["run", "--space", "smoke", "--set", "lr"], named="--set"),
    Case("run-eval-data-no-dir", lambda w: ["run", "--space", "smoke", "--eval-data", "tum"], named="--eval-data"),
    Case("synth-size", lambda w: ["synth", "--out", w.here / "s", "--size", "64by80"], named="--size"),
    Case("predict-no-input", lambda w: ["predict", "--experiment", w.exp, "--out", w.here / "p"], named="--input"),
    Case("figures-n-zero", lambda w: ["figures", "--experiment", w.exp, "--n", "0"], named="--n"),
    Case("weights-unknown", lambda w: ["weights", "download"], named="download"),
]

# ---- run: the data, the plan, the record ------------------------------------------------------
RUN = [
    Case("run-unknown-space", lambda w: ["run", "--space", "no_such", "--data", w.data, "--results", w.here],
         named="unknown search space 'no_such'"),
    Case("run-bad-trial-setting", lambda w: ["run", "--space", "smoke", "--data", w.data, "--results", w.here,
                                             "--set", "lr=-1"], named="lr=-1"),
    Case("run-missing-data", lambda w: ["run", "--space", "smoke", "--data", w.here / "nope", "--results", w.here],
         named="nope"),
]

# ---- commands that read an experiment or a checkpoint -----------------------------------------
MODEL = [
    Case("predict-not-an-experiment", lambda w: ["predict", "--experiment", w.here, "--input", w.data,
                                                 "--out", w.here / "p"], named="experiment.json: not found"),
    Case("predict-both-sources", lambda w: ["predict", "--experiment", w.exp, "--checkpoint", w.here / "c.pt",
                                            "--input", w.data, "--out", w.here / "p"], named="exactly one of"),
    Case("export-unknown-trial", lambda w: ["export", "--experiment", w.exp, "--trial", "t9", "--out", w.here / "e"],
         named="no trial 't9'"),
    Case("evaluate-missing-preds", lambda w: ["evaluate", "--pred", w.here / "none", "--data", w.data],
         named="prediction folder does not exist"),
    Case("leaderboard-not-an-experiment", lambda w: ["leaderboard", w.here], named="experiment.json: not found"),
    Case("submit-no-test-list", lambda w: ["submit", "--experiment", w.exp, "--data", w.data, "--out",
                                           w.here / "s.csv"], named="test_list.txt: test list not found"),
]

# ---- data tools -------------------------------------------------------------------------------
DATA = [
    Case("check-missing-folder", lambda w: ["check", "--data", w.here / "nope"], named="nope"),
    Case("split-missing-folder", lambda w: ["split", "--data", w.here / "nope"], named="nope"),
    Case("synth-out-not-empty", lambda w: ["synth", "--out", w.here, "--scenes", "1", "--views", "1"],
         setup=_text("mine.txt", "keep me"), named=lambda w: str(w.here)),
]

CASES: list[Case] = [*USAGE, *RUN, *MODEL, *DATA]
