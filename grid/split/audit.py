"""The leakage audit of an evaluation set: which of its images have a near-duplicate on the
training side, by the split's own measure (MobileNetV2 embeddings, cosine >= the split's
threshold).

A split keeps near-duplicates off the two sides of train/validation; an evaluation set from
elsewhere (``depth-grid run --eval-data``, ``depth-grid split --against``) gets no such care, and
a frame of a training room in it turns a zero-shot score into a memory test. The result, per set:

    {NAME: {"near_duplicates": N, "pairs": [[eval_item, train_item, cosine], ...]}}

``N`` counts the evaluation images with at least one training image at cosine >= ``threshold``
(compared in float32, as the split's links are); ``pairs`` holds one pair per such image, its
nearest training image, most similar first (so ``len(pairs) == N``). Embeddings come from the
split's cache: the training side of a run is embedded already.

This module imports neither torch nor the embedding model at import time: the leaderboard reads
``warning_lines`` from it without loading either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables.data import DatasetSpec, Item

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class AuditSet:
    """One evaluation set to audit: its name, how to read it and its items."""

    name: str
    spec: DatasetSpec
    items: Sequence[Item]


def nearest_rows(queries: np.ndarray, keys: np.ndarray, *, device: torch.device | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``queries`` (unit rows), its most similar row of ``keys``: ``(cosine,
    index)``, both (Q,), computed block by block (at most ``graph.BLOCK_ELEMENTS`` at a time)."""
    import torch

    from grid.split.graph import block_rows

    if len(keys) == 0:
        return np.full(len(queries), -np.inf, np.float32), np.full(len(queries), -1, np.int64)
    dev = device or torch.device("cpu")
    k = torch.from_numpy(np.ascontiguousarray(keys, np.float32)).to(dev)  # (K, D)
    best_s, best_i = [], []
    step = block_rows(len(keys))
    for r0 in range(0, len(queries), step):
        q = torch.from_numpy(np.ascontiguousarray(queries[r0:r0 + step], np.float32)).to(dev)
        s, i = (q @ k.T).max(dim=1)  # (B, K) -> (B,)
        best_s.append(s.cpu().numpy())
        best_i.append(i.cpu().numpy())
    return np.concatenate(best_s), np.concatenate(best_i)


def duplicates(eval_names: list[str], eval_vectors: np.ndarray, train_names: list[str],
               train_vectors: np.ndarray, *, threshold: float,
               device: torch.device | None = None) -> dict[str, Any]:
    """One set's audit (module docstring) from its embeddings and the training side's."""
    sims, idx = nearest_rows(eval_vectors, train_vectors, device=device)
    hits = np.flatnonzero(sims >= np.float32(threshold))
    hits = hits[np.argsort(-sims[hits], kind="stable")]
    pairs = [[eval_names[e], train_names[int(idx[e])], round(float(sims[e]), 4)] for e in hits.tolist()]
    return {"near_duplicates": len(pairs), "pairs": pairs}


def audit(train_items: Sequence[Item], train_spec: DatasetSpec, sets: Sequence[AuditSet], *,
          threshold: float = 0.9, cache_dir: Path | None = None, batch_size: int = 32,
          device: str | torch.device | None = None) -> dict[str, dict[str, Any]]:
    """Audit each of ``sets`` against ``train_items``: ``{name: {"near_duplicates", "pairs"}}``.

    Args:
        threshold: the split's strict link (``compute_split``'s ``threshold``).
        cache_dir: the split's cache root (embeddings under ``embeddings/``); ``None``: no cache.
        device: for embeddings and similarities; default CUDA when available.

    Raises:
        DataError: an image that cannot be read (named).
    """
    # the split's own hashing: an unreadable image is a DataError naming it
    from grid.split.compute import _hash_items
    from grid.split.embed import EMBED_DIM, embed_items, resolve_device

    dev = resolve_device(device)

    def vectors(items: Sequence[Item], spec: DatasetSpec) -> np.ndarray:
        if not items:
            return np.zeros((0, EMBED_DIM), np.float32)
        items = list(items)
        return embed_items(items, spec, cache_dir=cache_dir, batch_size=batch_size, device=dev,
                           hashes=_hash_items(items)).vectors

    train = vectors(train_items, train_spec)
    names = [it.name for it in train_items]
    return {s.name: duplicates([it.name for it in s.items], vectors(s.items, s.spec), names, train,
                               threshold=threshold, device=dev) for s in sets}


def warning_lines(result: dict[str, dict[str, Any]], threshold: float) -> list[str]:
    """One line per set with near-duplicates of training images; none for a clean set."""
    lines = []
    for name, found in result.items():
        n = found["near_duplicates"]
        if n:
            eval_item, train_item, cos = found["pairs"][0]
            lines.append(f"warning: eval set {name}: {n} image(s) have a near-duplicate in the training "
                         f"data (cosine >= {threshold:g}; closest: {eval_item} ~ {train_item}, {cos:.4f}); "
                         "its scores are not zero-shot")
    return lines


def format_audit(result: dict[str, dict[str, Any]], threshold: float, shown: int = 10) -> str:
    """Human-readable lines of an audit: per set the count and the closest pairs."""
    lines = []
    for name, found in result.items():
        lines.append(f"{name}: {found['near_duplicates']} image(s) with a near-duplicate in training "
                     f"(cosine >= {threshold:g})")
        lines += [f"    {cos:.4f}  {e}  <->  {t}" for e, t, cos in found["pairs"][:shown]]
        if found["near_duplicates"] > shown:
            lines.append(f"    ... and {found['near_duplicates'] - shown} more")
    return "\n".join(lines)
