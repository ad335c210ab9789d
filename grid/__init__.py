"""Driver side of depth-grid: CLI entry points, split, leaderboard, prediction."""
