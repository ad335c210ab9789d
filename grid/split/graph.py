"""Blockwise cosine similarity and the pairs the split's graph is made of.

Embeddings are unit rows, so a cosine is a dot product. No function here holds more than one
block of the similarity matrix (``BLOCK_ELEMENTS`` entries, 64 MB of float32) at a time, so
memory grows with N, not N^2; time is one pass over the upper triangle (N^2 / 2 dot products).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

MAX_HELD_EDGES = 4_000_000  # beyond this, strict edges are reduced to a spanning forest
ORDER_LIFT = 5.0  # an order is evidence when neighbours are this much likelier to be similar
MIN_BACKGROUND_PAIRS = 50  # fewer background pairs than this: too small to judge an order
BLOCK_ELEMENTS = 1 << 24  # similarity entries per block: 64 MB of float32


def block_rows(n_cols: int) -> int:
    """Rows per similarity block so that one block holds at most ``BLOCK_ELEMENTS`` entries."""
    return max(1, BLOCK_ELEMENTS // max(n_cols, 1))


def cross_split_pairs(
    vectors: np.ndarray, is_val: np.ndarray, *, threshold: float, k: int = 10,
    device: torch.device | None = None,
) -> tuple[list[tuple[int, int, float]], int]:
    """The ``k`` most similar (val, train) pairs and the number of such pairs >= ``threshold``.

    Returns ``([(val_index, train_index, similarity), ...] best first, count)``.
    """
    dev = device or torch.device("cpu")
    val_idx, train_idx = np.flatnonzero(is_val), np.flatnonzero(~is_val)
    if len(val_idx) == 0 or len(train_idx) == 0:
        return [], 0
    train = torch.from_numpy(vectors[train_idx]).to(dev)  # (T, D)
    thr = torch.tensor(threshold, dtype=torch.float32, device=dev)
    best_s = torch.empty(0, device=dev)
    best_i = torch.empty(0, dtype=torch.long, device=dev)
    count, step = 0, block_rows(len(train_idx))
    for r0 in range(0, len(val_idx), step):
        rows = torch.from_numpy(vectors[val_idx[r0:r0 + step]]).to(dev)
        sim = rows @ train.T  # (B, T)
        count += int((sim >= thr).sum())
        row_s, row_j = torch.topk(sim, min(k, sim.shape[1]), dim=1)  # (B, k): no copy of sim
        s, flat = torch.topk(row_s.reshape(-1), min(k, row_s.numel()))
        # -> global (val position, train position) encoded as one integer
        glob = (flat // row_s.shape[1] + r0) * len(train_idx) + row_j.reshape(-1)[flat]
        best_s, order = torch.topk(torch.cat([best_s, s]), min(k, len(best_s) + len(s)))
        best_i = torch.cat([best_i, glob])[order]
    pairs = [(int(val_idx[g // len(train_idx)]), int(train_idx[g % len(train_idx)]), float(s))
             for g, s in zip(best_i.tolist(), best_s.tolist(), strict=True)]
    return pairs, count


def _forest(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges with the same components as (i, j): each node linked to its component's first node."""
    labels = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)),
                                  directed=False)[1]
    first = np.full(labels.max() + 1, n)
    np.minimum.at(first, labels, np.arange(n))
    keep = first[labels] != np.arange(n)
    return np.flatnonzero(keep), first[labels][keep]


def strict_pairs(vectors: np.ndarray, threshold: float, *,
                 device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` with cosine >= ``threshold`` (compared in float32), found block by block.

    Each block is ``rows x (N - r0)`` of the upper triangle, at most 64 MB; when very many pairs
    pile up (a dataset of near-identical images) they are reduced to a spanning forest, which
    keeps the connected components and bounds memory by N.
    """
    n = len(vectors)
    dev = device or torch.device("cpu")
    emb = torch.from_numpy(np.ascontiguousarray(vectors, np.float32)).to(dev)  # (N, D)
    thr = torch.tensor(threshold, dtype=torch.float32, device=dev)
    found_i, found_j, held = [], [], 0
    step = block_rows(n)
    for r0 in range(0, n, step):
        sim = emb[r0:r0 + step] @ emb[r0:].T  # (B, N - r0)
        rows, cols = torch.nonzero(torch.triu(sim >= thr, diagonal=1), as_tuple=True)
        found_i.append(rows.cpu().numpy() + r0)
        found_j.append(cols.cpu().numpy() + r0)
        held += len(rows)
        if held > MAX_HELD_EDGES:
            i, j = _forest(np.concatenate(found_i), np.concatenate(found_j), n)
            found_i, found_j, held = [i], [j], len(i)
    return np.concatenate(found_i), np.concatenate(found_j)


def _natural_key(name: str) -> tuple:
    parts = re.split(r"(\d+)", name)  # str, digits, str, ...: ints only at odd positions
    return tuple(int(p) if k % 2 else p for k, p in enumerate(parts)), name


def _orders(names: list[str]) -> dict[str, np.ndarray]:
    """The two orders in which frames of one video sit together: the list's and the names'."""
    by_name = sorted(range(len(names)), key=lambda k: _natural_key(names[k]))
    return {"list": np.arange(len(names)), "name": np.array(by_name, dtype=np.int64)}


def _offset_pairs(order: np.ndarray, steps) -> tuple[np.ndarray, np.ndarray]:
    a = np.concatenate([order[:-d] for d in steps] or [order[:0]])
    b = np.concatenate([order[d:] for d in steps] or [order[:0]])
    return a, b


def _rowdot(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Cosine of each pair ``(a[k], b[k])``, gathered in chunks (P x D copies would cost GBs)."""
    out = np.empty(len(a), np.float32)
    for s in range(0, len(a), chunk):
        out[s:s + chunk] = np.einsum("kd,kd->k", vectors[a[s:s + chunk]], vectors[b[s:s + chunk]])
    return out


def order_evidence(vectors: np.ndarray, order: np.ndarray, threshold: float, window: int) -> dict:
    """Does this order put similar images next to each other more often than chance?

    Compares the share of neighbour pairs (``<= window`` apart) at cosine >= ``threshold`` with
    the share of pairs a third, a half and two thirds of the dataset apart (unrelated images in an
    ordered list, random ones in a shuffled list). Add-one smoothing keeps tiny counts sane.
    """
    n = len(order)
    near = _rowdot(vectors, *_offset_pairs(order, range(1, min(window, n - 1) + 1)))
    offsets = sorted({o for o in (n // 3, n // 2, 2 * n // 3) if window < o < n - window})
    far = np.concatenate([_rowdot(vectors, order, np.roll(order, -o)) for o in offsets] or [near[:0]])
    thr = np.float32(threshold)
    near_rate = (int((near >= thr).sum()) + 1) / (len(near) + 1)
    far_rate = (int((far >= thr).sum()) + 1) / (len(far) + 1)
    lift = near_rate / far_rate
    used = len(far) < MIN_BACKGROUND_PAIRS or lift >= ORDER_LIFT  # too few pairs to judge: trust it
    return {"neighbour_rate": round(near_rate, 4), "background_rate": round(far_rate, 4),
            "lift": round(lift, 2), "used": bool(used)}


def sequence_pairs(vectors: np.ndarray, names: list[str], threshold: float,
                   window: int = 1) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pairs at most ``window`` apart in an informative order with cosine >= ``threshold``.

    An order (list or natural name order) is used only when ``order_evidence`` finds that it
    groups similar images (lift >= ``ORDER_LIFT``); a shuffled list or hashed names would
    otherwise link random pairs that happen to reach ``threshold``.
    Returns ``(i, j, info)`` with ``info`` = the evidence per order and the number of links.
    """
    info: dict = {}
    a, b = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    steps = range(1, min(window, len(names) - 1) + 1)
    for label, order in _orders(names).items():
        info[label] = order_evidence(vectors, order, threshold, window)
        if info[label]["used"]:
            i, j = _offset_pairs(order, steps)
            keep = _rowdot(vectors, i, j) >= np.float32(threshold)
            a.append(np.minimum(i, j)[keep])
            b.append(np.maximum(i, j)[keep])
    pairs = np.unique(np.stack([np.concatenate(a), np.concatenate(b)], 1), axis=0)
    info["links"] = len(pairs)
    return pairs[:, 0], pairs[:, 1], info
