"""The training subset of a ``train_fraction`` trial: whole split clusters, kept or dropped.

The split (``grid.split.compute``) puts near-duplicate images in one cluster; a subset that kept
half a cluster would train on images whose twins it dropped, so the data-efficiency curve would
measure fewer *distinct* scenes than it claims. Here clusters are ordered once by a permutation
drawn from ``numpy.random.default_rng(seed)`` and a prefix is taken until the kept items reach
``fraction * N``:

- a cluster is kept whole or dropped whole;
- the count overshoots ``fraction * N`` by less than the last cluster taken (exact to one cluster);
- at one seed the subsets are nested: a larger fraction takes a longer prefix of the same order,
  so the 0.25 subset contains the 0.1 subset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def cluster_subset(clusters: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Positions (ascending) of the items kept from a list whose item ``i`` is in cluster
    ``clusters[i]``; ``fraction`` in (0, 1] (1 keeps everything)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    n = len(clusters)
    if fraction == 1.0 or n == 0:
        return list(range(n))
    sizes = Counter(clusters)
    ids = sorted(sizes)  # the order the permutation applies to: independent of the list's order
    order = np.random.default_rng(seed).permutation(len(ids))
    target, kept, count = fraction * n, set(), 0
    for k in order.tolist():
        if count >= target:
            break
        kept.add(ids[k])
        count += sizes[ids[k]]
    return [i for i, c in enumerate(clusters) if c in kept]


def train_subset(items: Sequence[T], clusters: Sequence[int], fraction: float, seed: int) -> list[T]:
    """``items`` reduced to ``fraction`` of them, whole clusters at a time (``cluster_subset``).

    ``clusters`` empty: each item counts as its own cluster (a ``DataBundle`` built by hand,
    without a split's clusters).
    """
    if not clusters:
        clusters = range(len(items))
    elif len(clusters) != len(items):
        raise ValueError(f"{len(items)} training items but {len(clusters)} cluster ids")
    return [items[i] for i in cluster_subset(list(clusters), fraction, seed)]
