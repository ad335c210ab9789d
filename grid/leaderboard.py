"""The leaderboard: one row per trial, sorted by validation SI-RMSE, rebuilt from disk.

``python -m grid.leaderboard results/<experiment>`` reads the Tune folders named in the
experiment's ``experiment.json`` (trial ``params.json``, ``result.json``, ``error.txt`` and the
checkpoints' ``metrics.json``) without starting Ray, and rewrites ``leaderboard.csv`` / ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from trainables.io import atomic_write

COLUMNS = [
    "trial_id", "arch", "lam", "lr", "weight_decay", "epochs_done", "epochs", "si_rmse", "abs_rel", "rmse",
    "delta1", "train_loss", "params", "weights", "gpu_hours", "status", "error", "checkpoint",
]
SHOWN = ["arch", "lam", "lr", "epochs_done", "si_rmse", "abs_rel", "rmse", "delta1", "train_loss", "params",
         "weights", "gpu_hours", "status"]


class LeaderboardError(RuntimeError):
    """The experiment folder cannot be read."""


def read_experiment(experiment_dir: Path) -> dict:
    path = Path(experiment_dir) / "experiment.json"
    if not path.is_file():
        raise LeaderboardError(f"{path}: not found; is {experiment_dir} an experiment folder written by grid.run?")
    return json.loads(path.read_text())


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a killed process
            continue
    # A trial restored from a checkpoint can repeat epochs it had reported; keep the last of each.
    by_epoch = {r.get("epoch"): r for r in rows if "epoch" in r}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _error_message(trial_dir: Path) -> str:
    path = trial_dir / "error.txt"
    if not path.is_file():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    causes = [ln for ln in lines if "Error:" in ln or "Exception:" in ln]
    return (causes[-1] if causes else lines[-1])[:300] if lines else "error"


def _best_checkpoint(trial_dir: Path) -> tuple[str, float]:
    best, best_score = "", math.inf
    for ckpt in sorted(trial_dir.glob("checkpoint_*")):
        metrics_file = ckpt / "metrics.json"
        if not (ckpt / "checkpoint.pt").is_file() or not metrics_file.is_file():
            continue
        score = json.loads(metrics_file.read_text()).get("si_rmse", math.inf)
        if score < best_score:
            best, best_score = str((ckpt / "checkpoint.pt").resolve()), score
    return best, best_score


def trial_row(trial_dir: Path, gpus_per_trial: float, statuses: dict[str, str]) -> dict:
    params = json.loads((trial_dir / "params.json").read_text())
    results = _results(trial_dir)
    last = results[-1] if results else {}
    best = min(results, key=lambda r: r.get("si_rmse", math.inf)) if results else {}
    checkpoint, _ = _best_checkpoint(trial_dir)
    trial_id = last.get("trial_id") or trial_dir.name
    epochs = int(params.get("epochs", 0))
    done = int(last.get("epoch", 0))
    error = _error_message(trial_dir)
    if done >= epochs > 0:
        status = "finished"
    elif error:
        status = "error"
    else:
        status = statuses.get(trial_id, "incomplete")
    seconds = float(last.get("time_total_s", 0.0))
    return {
        "trial_id": trial_id, "arch": params.get("arch"), "lam": params.get("lam"), "lr": params.get("lr"),
        "weight_decay": params.get("weight_decay"), "epochs_done": done, "epochs": epochs,
        "si_rmse": best.get("si_rmse"), "abs_rel": best.get("abs_rel"), "rmse": best.get("rmse"),
        "delta1": best.get("delta1"), "train_loss": last.get("train_loss"), "params": last.get("params"),
        "weights": last.get("weights", ""), "gpu_hours": round(seconds * gpus_per_trial / 3600, 4),
        "status": status, "error": error if status == "error" else "", "checkpoint": checkpoint,
    }


def build_leaderboard(experiment_dir: Path, statuses: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per trial folder of the experiment's Tune runs, best SI-RMSE first."""
    info = read_experiment(experiment_dir)
    statuses = statuses if statuses is not None else info.get("trial_status", {})
    rows = []
    for tune_dir in info.get("tune_dirs", []):
        tune_dir = Path(tune_dir)
        if not tune_dir.is_dir():
            continue  # remote storage: rebuild from a synced copy
        for trial_dir in sorted(p for p in tune_dir.iterdir() if (p / "params.json").is_file()):
            rows.append(trial_row(trial_dir, float(info.get("gpus_per_trial", 0)), statuses))
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["si_rmse", "arch"], na_position="last", kind="stable").reset_index(drop=True)


def write_leaderboard(df: pd.DataFrame, experiment_dir: Path) -> tuple[Path, Path]:
    """Write ``leaderboard.csv`` and ``leaderboard.md`` atomically."""
    experiment_dir = Path(experiment_dir)
    csv_path, md_path = experiment_dir / "leaderboard.csv", experiment_dir / "leaderboard.md"
    with atomic_write(csv_path) as fh:
        df.to_csv(fh, index=False)
    with atomic_write(md_path) as fh:
        fh.write(f"# Leaderboard: {experiment_dir.name}\n\nValidation metrics, best epoch per trial; "
                 "lower si_rmse is better.\n\n" + format_table(df) + "\n")
    return csv_path, md_path


def format_table(df: pd.DataFrame) -> str:
    """A markdown table of the columns a reader compares."""
    shown = df[SHOWN].copy()
    for col in ("si_rmse", "abs_rel", "rmse", "delta1", "train_loss"):
        shown[col] = shown[col].map(lambda v: f"{v:.4f}" if isinstance(v, (int, float)) and v == v else "")
    lines = ["| " + " | ".join(SHOWN) + " |", "|" + "---|" * len(SHOWN)]
    for _, row in shown.iterrows():
        lines.append("| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |")
    errors = df[df.status == "error"]
    for _, row in errors.iterrows():
        lines.append(f"\n- `{row.trial_id}` ({row.arch}) failed: {row.error}")
    return "\n".join(lines)


def read_leaderboard(experiment_dir: Path) -> pd.DataFrame:
    path = Path(experiment_dir) / "leaderboard.csv"
    if not path.is_file():
        raise LeaderboardError(f"{path}: no leaderboard yet; run `python -m grid.leaderboard {experiment_dir}`")
    return pd.read_csv(path)


def best_checkpoint(experiment_dir: Path) -> Path:
    """The best trial's best checkpoint file."""
    df = read_leaderboard(experiment_dir)
    df = df[df.checkpoint.notna() & (df.checkpoint != "")]
    if df.empty:
        raise LeaderboardError(f"{experiment_dir}: no trial has a checkpoint")
    return Path(df.sort_values("si_rmse").iloc[0].checkpoint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grid.leaderboard", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path, help="results/<experiment> folder")
    args = parser.parse_args(argv)
    try:
        df = build_leaderboard(args.experiment)
    except LeaderboardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    csv_path, _ = write_leaderboard(df, args.experiment)
    print(format_table(df))
    print(f"\nwritten: {csv_path} and leaderboard.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
