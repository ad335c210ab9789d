"""``depth-grid leaderboard``: rebuild an experiment's leaderboard from its storage
(``grid.experiment.record.Experiment.leaderboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def leaderboard(
    experiment: Annotated[Path, typer.Argument(help="results/<experiment> folder")],
    prices: Annotated[Path | None, typer.Option(
        help="price table (JSON or TOML) replacing the experiment's")] = None,
) -> None:
    """Rebuild an experiment's leaderboard from Tune's records in its storage, without Ray, and
    rewrite leaderboard.csv and leaderboard.md.

    \b
    examples:
      depth-grid leaderboard results/smoke
      depth-grid leaderboard results/grid1 --prices my_prices.toml
    """
    from grid.experiment.cost import cost_line
    from grid.experiment.leaderboard import format_table
    from grid.experiment.record import Experiment

    exp = Experiment.load(experiment)
    board = exp.leaderboard(prices=prices)
    csv_path = exp.write_leaderboard(board)
    print(format_table(board) + "\n\n" + cost_line(board))
    print(f"\nwritten: {csv_path} and leaderboard.md")
