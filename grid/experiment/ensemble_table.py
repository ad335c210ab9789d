"""The top-K ensemble's scores (``depth-grid evaluate --ensemble K``) as leaderboard.md shows them."""

from __future__ import annotations

import json
from pathlib import Path

ENSEMBLE_FILE = "ensemble.json"  # depth-grid evaluate --ensemble's record, shown in leaderboard.md
ENSEMBLE_SHOWN = ("si_rmse", "abs_rel", "rmse", "delta1")


def format_ensemble(record: dict) -> str:
    """The ensemble against each of its members, as a Markdown table with a one-line verdict."""
    def cells(metrics: dict) -> str:
        return " | ".join(f"{metrics[name]:.4f}" for name in ENSEMBLE_SHOWN)

    lines = [f"| model | {' | '.join(ENSEMBLE_SHOWN)} |", "|" + "---|" * (len(ENSEMBLE_SHOWN) + 1),
             f"| **top-{record['k']} ensemble** | {cells(record['ensemble'])} |"]
    for m in record["members"]:
        lines.append(f"| {m['arch']} `{m['trial_id']}` ({m['input_size'][0]}x{m['input_size'][1]}) | "
                     f"{cells(m['metrics'])} |")
    best = min(record["members"], key=lambda m: m["metrics"]["si_rmse"])
    gain = best["metrics"]["si_rmse"] - record["ensemble"]["si_rmse"]
    lines.append(f"\nOn {record['images']} validation images the ensemble's si_rmse is "
                 f"{record['ensemble']['si_rmse']:.4f}, {abs(gain):.4f} {'below' if gain >= 0 else 'above'} "
                 f"the best single trial ({best['arch']}, {best['metrics']['si_rmse']:.4f}).")
    return "\n".join(lines)


def ensemble_section(experiment_dir: Path) -> str:
    """The Markdown shown under the leaderboard when ``grid.evaluate --ensemble`` has run."""
    path = Path(experiment_dir) / ENSEMBLE_FILE
    if not path.is_file():
        return ""
    record = json.loads(path.read_text())
    return (f"\n## Top-{record['k']} ensemble\n\nMean log-depth of the best {record['k']} finished trials, each "
            f"at its own input size, scored with its members on the validation split (`depth-grid "
            f"evaluate --experiment {Path(experiment_dir).name} --ensemble {record['k']}`).\n\n"
            + format_ensemble(record) + "\n")
