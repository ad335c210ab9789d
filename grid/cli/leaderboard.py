"""``depth-grid leaderboard``: rebuild an experiment's leaderboard from its storage
(``grid.experiment.record.Experiment.leaderboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def leaderboard(
    experiment: Annotated[str, typer.Argument(metavar="DIR|URI", help="results/<experiment> folder, or its record in a bucket (gs://BUCKET/PATH/NAME)")],
    prices: Annotated[Path | None, typer.Option(
        help="price table (JSON or TOML) replacing the experiment's")] = None,
    reference: Annotated[bool, typer.Option(
        "--reference", help="also place each trial's abs_rel among published numbers under its protocol "
                            "(docs/metrics.md)")] = False,
) -> None:
    """Rebuild an experiment's leaderboard from Tune's records in its storage, without Ray, and
    rewrite leaderboard.csv and leaderboard.md.

    \b
    examples:
      depth-grid leaderboard results/smoke
      depth-grid leaderboard results/grid1 --prices my_prices.toml
      depth-grid leaderboard results/nyu --reference   # a run with --protocol nyu, beside the papers
      depth-grid leaderboard results/seeded     # a run with --seeds K: also the rows grouped by seed
    """
    from grid.experiment.cost import cost_line
    from grid.experiment.groups import GROUPS_CSV, seeds_section
    from grid.experiment.leaderboard import format_table
    from grid.experiment.record import Experiment

    exp = Experiment.load(experiment)
    board = exp.leaderboard(prices=prices)
    csv_path = exp.write_leaderboard(board)
    grouped = seeds_section(board)  # several seeds per setting: their mean, spread and interval
    print(format_table(board) + "\n\n" + cost_line(board) + ("\n" + grouped if grouped else ""))
    if reference:
        from grid.experiment.reference import reference_table

        print("\nAgainst published numbers (validation split, not the papers' test split):\n" + reference_table(board))
    print(f"\nwritten: {csv_path}, leaderboard.md" + (f" and {GROUPS_CSV}" if grouped else ""))
