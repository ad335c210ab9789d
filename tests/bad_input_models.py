"""Mistakes with the commands that read an experiment or a checkpoint, or write outputs: leaderboard,
predict, submit, evaluate, figures, export."""

from __future__ import annotations

from bad_input_world import Case

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


CASES: list[Case] = [*MODEL]
