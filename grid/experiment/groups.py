"""The leaderboard grouped by seed: the trials that differ only by their seed (``--seeds K``) as
one row with each metric's mean and standard deviation, and a paired per-image bootstrap 95%
interval of its si_rmse difference to the best group (``grid.experiment.stats``).

Each trial's per-image scores are read from its best checkpoint's ``per_image.json``
(``trainables.scores``) through ``Storage``, so a remote storage works as a local one.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from grid.experiment.stats import Interval, mean_scores, paired_bootstrap, verdict
from grid.experiment.storage import Storage
from trainables.io import atomic_write

PER_IMAGE_FILE = "per_image.json"  # trainables.scores.SCORES_FILE (that module loads torch)
GROUPS_CSV = "leaderboard_groups.csv"
METRICS = ("si_rmse", "abs_rel", "rmse", "delta1")
LABELS = ("arch", "tag", "lam", "lr", "weight_decay")  # shown to tell the groups apart
EXPLAIN = ("Rows that differ only by the trial seed, best mean si_rmse first: each metric's mean and "
           "standard deviation over the seeds; `diff` is the mean per-image si_rmse difference to the "
           "best group (per-image scores averaged over each group's seeds), `95% CI` its paired "
           "bootstrap interval over the validation images (2000 seeded resamples); an interval that "
           "covers 0 is not distinguishable from the best.")


def group_key(params: dict) -> str:
    """A short id shared by the trials whose settings differ only by ``seed``."""
    rest = {k: v for k, v in params.items() if k != "seed"}
    digest = hashlib.sha1(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"g{digest}"  # never read back from a CSV as a number ("12345678", "1e234567")


def scores_uri(store: Storage, checkpoint: str) -> str:
    """The ``per_image.json`` beside a checkpoint file (a path or URI), or "" when it has none."""
    if not checkpoint:
        return ""
    path = f"{checkpoint.removeprefix(store.prefix).rsplit('/', 1)[0]}/{PER_IMAGE_FILE}"
    return store.uri(path) if store.is_file(path) else ""


def read_scores(uri: str) -> dict[str, float]:
    """A trial's per-image si_rmse (item name -> score) from a ``per_image.json`` path or URI."""
    store = Storage(uri)
    return {str(k): float(v) for k, v in json.loads(store.read_text(store.root))["scores"].items()}


def _finished(board: pd.DataFrame) -> pd.DataFrame:
    if "group" not in board:
        return board.iloc[0:0]
    return board[(board.status == "finished") & board.si_rmse.notna() & board.group.notna()]


def has_seeds(board: pd.DataFrame) -> bool:
    """Some group has more than one finished seed: the grouped view says something."""
    return bool((_finished(board).groupby("group").size() > 1).any())


def _group_scores(rows: pd.DataFrame) -> dict[str, float] | None:
    uris = [u for u in rows.get("per_image", pd.Series(dtype=str)).fillna("") if u]
    if not uris or len(uris) < len(rows):  # a seed without scores: no interval rather than a partial one
        return None
    return mean_scores([read_scores(u) for u in uris])


def group_table(board: pd.DataFrame) -> pd.DataFrame:
    """One row per group of finished trials, best mean si_rmse first (see ``EXPLAIN``)."""
    done = _finished(board)
    rows, scores = [], {}
    for key, trials in done.groupby("group", sort=False):
        first = trials.iloc[0]
        row = {"group": key, **{c: first.get(c) for c in LABELS},
               "seeds": " ".join(str(int(s)) for s in sorted(trials.seed.dropna())), "n_seeds": len(trials)}
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = trials[m].mean(), trials[m].std(ddof=1)
        rows.append(row)
        scores[key] = _group_scores(trials)
    table = pd.DataFrame(rows, columns=["group", *LABELS, "seeds", "n_seeds",
                                        *(f"{m}_{s}" for m in METRICS for s in ("mean", "std"))])
    table = table.sort_values(["si_rmse_mean", "arch"], kind="stable").reset_index(drop=True)
    best = scores.get(table.group[0]) if len(table) else None
    found = [_compare(best, scores[g]) for g in table.group]
    table["images"] = [c.images if c else math.nan for c in found]
    table["si_rmse_diff"] = [c.diff if c else math.nan for c in found]
    table["ci_low"] = [c.low if c else math.nan for c in found]
    table["ci_high"] = [c.high if c else math.nan for c in found]
    table["verdict"] = ["best" if i == 0 else verdict(c) for i, c in enumerate(found)]
    return table


def _compare(best: dict[str, float] | None, other: dict[str, float] | None) -> Interval | None:
    if not best or not other or not set(best) & set(other):
        return None
    return paired_bootstrap(best, other)


def format_groups(table: pd.DataFrame) -> str:
    """The grouped table in Markdown, with the line that explains its columns."""
    labels = [c for c in LABELS if table[c].fillna("").astype(str).ne("").any()]
    head = ["group", *labels, "seeds", *METRICS, "diff", "95% CI", "verdict"]

    def cell(row, m: str) -> str:
        mean, std = row[f"{m}_mean"], row[f"{m}_std"]
        return f"{mean:.4f}" + (f" ± {std:.4f}" if std == std else "")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        compared = row.verdict != "best" and row.ci_low == row.ci_low
        ci = f"[{_signed(row.ci_low)}, {_signed(row.ci_high)}]" if compared else ""
        diff = _signed(row.si_rmse_diff) if compared else ""
        cells = [row.group, *("" if pd.isna(row[c]) else str(row[c]) for c in labels), row.seeds,
                 *(cell(row, m) for m in METRICS), diff, ci, row.verdict]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return EXPLAIN + "\n\n" + "\n".join(lines)


def _signed(value: float) -> str:
    """A difference with its sign, small ones in two significant digits instead of +0.0000."""
    return f"{value:+.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:+.1e}"


def seeds_section(board: pd.DataFrame) -> str:
    """``leaderboard.md``'s grouped view, when some group ran several seeds; else nothing."""
    if not has_seeds(board):
        return ""
    return "\n## Seeds\n\n" + format_groups(group_table(board)) + "\n"


def write_groups(board: pd.DataFrame, experiment_dir: Path) -> Path | None:
    """``leaderboard_groups.csv`` when some group ran several seeds (else none is written)."""
    if not has_seeds(board):
        return None
    path = Path(experiment_dir) / GROUPS_CSV
    with atomic_write(path) as fh:
        group_table(board).to_csv(fh, index=False)
    return path
