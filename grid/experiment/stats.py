"""Statistics for comparing leaderboard rows: pure functions of numbers, no files.

A group is the trials that differ only by their seed (``depth-grid run --seeds K``). Its
per-image score is the mean over its seeds of each validation image's si_rmse; two groups are
compared by a paired bootstrap over the images they both scored: the images are resampled
with replacement ``resamples`` times (one seeded ``numpy`` generator), the mean per-image
difference is taken in each resample, and the 2.5th and 97.5th percentiles bound the 95%
interval. The interval speaks to the choice of validation images; the seeds' spread is the
groups' standard deviation, shown beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LEVEL = 0.95


def mean_scores(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each image's mean score over ``runs`` (one mapping image name -> score per seed), on the
    images every run scored, in name order."""
    if not runs:
        return {}
    shared = set(runs[0]).intersection(*runs[1:])
    return {name: float(np.mean([run[name] for run in runs])) for name in sorted(shared)}


@dataclass(frozen=True)
class Interval:
    """``other - best`` on the paired images: the mean difference and its bootstrap interval."""

    diff: float
    low: float
    high: float
    images: int

    @property
    def covers_zero(self) -> bool:
        """Not distinguishable: the interval includes no difference at all."""
        return self.low <= 0.0 <= self.high


def bootstrap_resamples(n: int, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """The resampled image indices, (resamples, n): row r draws n images with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def paired_bootstrap(best: Mapping[str, float], other: Mapping[str, float], *, resamples: int = RESAMPLES,
                     seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> Interval:
    """The paired per-image bootstrap interval of ``mean(other - best)`` over the images both
    scored (in name order). ``ValueError`` when they share no image."""
    names = sorted(set(best) & set(other))
    if not names:
        raise ValueError("the two rows share no scored validation image")
    diff = np.array([other[n] - best[n] for n in names], dtype=np.float64)
    means = diff[bootstrap_resamples(len(names), resamples, seed)].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(diff.mean()), float(low), float(high), len(names))


def verdict(interval: Interval | None) -> str:
    """The grouped table's words for an interval against the best group."""
    if interval is None:
        return "no per-image scores"
    if interval.covers_zero:
        return "not distinguishable from the best"
    return "worse than the best" if interval.low > 0 else "better than the best on the shared images"
