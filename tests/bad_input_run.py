"""Mistakes with run, the data tools (check, split, synth, models, weights) and usage errors."""

from __future__ import annotations

from bad_input_world import Case, text_file

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

# ---- data tools -------------------------------------------------------------------------------
DATA = [
    Case("check-missing-folder", lambda w: ["check", "--data", w.here / "nope"], named="nope"),
    Case("split-missing-folder", lambda w: ["split", "--data", w.here / "nope"], named="nope"),
    Case("synth-out-not-empty", lambda w: ["synth", "--out", w.here, "--scenes", "1", "--views", "1"],
         setup=text_file("mine.txt", "keep me"), named=lambda w: str(w.here)),
]


CASES: list[Case] = [*USAGE, *RUN, *DATA]
