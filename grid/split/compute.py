"""Leakage-free train/validation split: near-duplicate images never straddle the two sides.

Pipeline: MobileNetV2 embeddings (``grid.split.embed``, cached per image content) -> a graph of
similar pairs -> connected components (``scipy.sparse.csgraph``) -> whole clusters assigned to
validation, largest first, until the target share is reached.

Methods (``METHODS``):
  ``sequence`` (default): the paper's strict links (cosine >= ``threshold``, all pairs, found
      blockwise) plus *sequence links*: two images at most ``sequence_window`` places apart in
      the list file or in natural name order are also linked when their cosine is
      >= ``sequence_threshold``. Frames of a video sit next to each other in either order, so
      a drifting sequence stays one cluster even where a fast move drops consecutive frames
      below ``threshold``, while images far apart in both orders (other rooms) keep the strict
      rule. See docs/split.md for the measurements behind the defaults.
  ``paper``: single linkage at ``threshold`` only (the paper's rule).
  ``random``: the naive random split, for comparison; its report still uses the ``sequence``
      clusters to show what leaks.

Order rule: clusters are ranked by size, largest first; equal sizes are ranked by a permutation
drawn from ``numpy.random.default_rng(seed)``. Walking the ranks, a cluster goes to validation
when adding it moves the validation count closer to ``target = max(1, round(val_fraction * N))``
without exceeding ``floor((val_fraction + 0.05) * N)``; a cluster that would overshoot is
skipped and the walk goes on with the next (smaller) one. Everything else is training.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grid.split import INPUT_SIZE
from trainables.data import DataError, DatasetSpec, Item, index_dataset

if TYPE_CHECKING:
    import torch

    from grid.split.embed import Embeddings
from trainables.io import atomic_write, write_json

SPLIT_VERSION = 1  # bump when the same inputs would give a different split: part of the cache key
VAL_TOLERANCE = 0.05  # the validation share may exceed val_fraction by at most this much


@dataclass(frozen=True)
class Split:
    """A train/validation split of item names (as written in the list file) and how it was made."""

    train: list[str]
    val: list[str]
    cluster_of: dict[str, int]  # item -> cluster rank (0 = largest cluster)
    params: dict
    embedding_model: str
    fingerprint: str  # of the dataset: item names and RGB content hashes, in list order
    report: dict

    def to_json(self, path: str | Path) -> Path:
        write_json(path, asdict(self))
        return Path(path)

    @classmethod
    def from_json(cls, path: str | Path) -> Split:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read split JSON ({e})") from e
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if not isinstance(data, dict) or n not in data]
        if missing:
            raise DataError(f"{path}: not a split file (missing {', '.join(missing)})")
        return cls(**{n: data[n] for n in names})


# ---- clusters ---------------------------------------------------------------------------------

def _paper_links(vectors, names, threshold, seq_threshold, seq_window, device):
    from grid.split.graph import strict_pairs

    i, j = strict_pairs(vectors, threshold, device=device)
    return i, j, {}


def _sequence_links(vectors, names, threshold, seq_threshold, seq_window, device):
    from grid.split.graph import sequence_pairs, strict_pairs

    i, j = strict_pairs(vectors, threshold, device=device)
    si, sj, info = sequence_pairs(vectors, names, seq_threshold, seq_window)
    return np.concatenate([i, si]), np.concatenate([j, sj]), info


def link_graph(
    vectors: np.ndarray, names: list[str], *, method: str = "sequence", threshold: float = 0.9,
    sequence_threshold: float = 0.8, sequence_window: int = 1, device: torch.device | None = None,
) -> tuple[np.ndarray, dict]:
    """Cluster label of every row of ``vectors`` (unit rows, same order as ``names``) and what
    the sequence links found (``sequence_pairs``' info; empty for ``paper``)."""
    if len(vectors) != len(names):
        raise ValueError(f"{len(vectors)} vectors but {len(names)} names")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-3):
        raise ValueError("embedding rows must be L2-normalised (cosine = dot product)")
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    links = METHODS[_check_method(method)].links
    i, j, info = links(vectors, names, threshold, sequence_threshold, sequence_window, device)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(names),) * 2)
    return connected_components(graph, directed=False)[1], info


def cluster_labels(vectors: np.ndarray, names: list[str], **kw) -> np.ndarray:
    """Cluster label of every row of ``vectors``; keywords as for ``link_graph``."""
    return link_graph(vectors, names, **kw)[0]


# ---- assignment -------------------------------------------------------------------------------

def rank_clusters(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters by size, largest first, equal sizes in a seeded random order.

    Returns ``(rank of each item's cluster, size of each rank)``.
    """
    sizes = np.bincount(labels)
    tiebreak = np.random.default_rng(seed).permutation(len(sizes))
    order = np.lexsort((tiebreak, -sizes))  # last key is primary: size descending
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels], sizes[order]


def assign_clusters(ranks: np.ndarray, sizes: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Validation mask: whole clusters, walked in rank order (the rule in the module docstring)."""
    n = int(sizes.sum())
    target = max(1, round(val_fraction * n))
    upper = max(target, math.floor((val_fraction + VAL_TOLERANCE) * n))
    take, val = np.zeros(len(sizes), bool), 0
    for r, size in enumerate(sizes.tolist()):
        if val >= target:
            break
        if val + size <= upper and abs(val + size - target) < abs(val - target):
            take[r], val = True, val + size
    if val == 0:
        raise DataError(
            f"cannot form a validation set: the smallest cluster has {sizes.min()} of {n} images, "
            f"more than the allowed {upper}; lower the thresholds or raise val_fraction")
    return take[ranks]


def assign_random(ranks: np.ndarray, sizes: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Validation mask of the naive split: a seeded random ``round(val_fraction * N)`` items."""
    n = len(ranks)
    is_val = np.zeros(n, bool)
    is_val[np.random.default_rng(seed).permutation(n)[:max(1, round(val_fraction * n))]] = True
    return is_val


@dataclass(frozen=True)
class Method:
    links: Callable  # (vectors, names, threshold, seq_threshold, seq_window, device) -> (i, j, info)
    assign: Callable  # (ranks, sizes, val_fraction, seed) -> is_val (N,) bool


METHODS: dict[str, Method] = {
    "sequence": Method(_sequence_links, assign_clusters),
    "paper": Method(_paper_links, assign_clusters),
    "random": Method(_sequence_links, assign_random),  # clusters only feed its report
}
DEFAULT_METHOD = "sequence"


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise KeyError(f"unknown split method {method!r}; valid: {sorted(METHODS)}")
    return method


# ---- the split --------------------------------------------------------------------------------

def dataset_fingerprint(names: list[str], hashes: list[str]) -> str:
    """16 hex digits identifying the item names and RGB contents, in list order."""
    h = hashlib.sha1()
    for name, digest in zip(names, hashes, strict=True):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()[:16]


def cache_path(cache_dir: Path, fingerprint: str, params: dict) -> Path:
    """Where the split of this dataset with these parameters is cached."""
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{fingerprint}-{params['method']}-{key}.json"


def _hash_items(items: list[Item]) -> list[str]:
    from grid.split.embed import file_sha1

    try:  # a packed item's SHA-1 is in its pack's manifest (Item.member)
        return [it.member[-1] if it.member is not None else file_sha1(it.rgb) for it in items]
    except OSError as e:
        raise DataError(f"{e.filename}: cannot read image ({e.strerror})") from e


def _stat_key(items: list[Item]) -> str:
    """A key of the item names, RGB sizes and mtimes, in list order: what ``make`` trusts."""
    h = hashlib.sha1()
    for it in items:
        st = it.rgb.stat()
        h.update(f"{it.name}\0{it.rgb}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def items_fingerprint(items: list[Item], cache_dir: Path | None, *, hash_missing: bool = True
                      ) -> tuple[str | None, list[str] | None]:
    """``(dataset_fingerprint, RGB hashes if they were read)``, reading no image when it can.

    The fingerprint stays content-based (names and RGB SHA-1s: a copied dataset, its pack and
    splits cached before keep their ids), but is found without hashing: a pack's manifest holds
    every SHA-1; a folder's is remembered under ``<cache_dir>/fingerprints/`` by a key of names,
    sizes and mtimes (``_stat_key``, a stat per file). Only a folder not seen before (or touched
    since) is hashed, unless ``hash_missing`` is False: then ``(None, None)``.
    """
    if all(it.member is not None for it in items):
        return dataset_fingerprint([it.name for it in items], _hash_items(items)), None
    try:
        memo = None if cache_dir is None else Path(cache_dir) / "fingerprints" / _stat_key(items)
    except OSError as e:
        raise DataError(f"{e.filename}: cannot read image ({e.strerror})") from e
    if memo is not None and memo.is_file():
        return memo.read_text().strip(), None
    if not hash_missing:
        return None, None
    hashes = _hash_items(items)
    fingerprint = dataset_fingerprint([it.name for it in items], hashes)
    if memo is not None:
        with atomic_write(memo) as fh:
            fh.write(fingerprint + "\n")
    return fingerprint, hashes


def _check_args(threshold: float, sequence_threshold: float, sequence_window: int,
                val_fraction: float) -> None:
    for name, value in (("threshold", threshold), ("sequence_threshold", sequence_threshold)):
        if not -1.0 < value <= 1.0:
            raise ValueError(f"{name} must be a cosine in (-1, 1], got {value}")
    if sequence_window < 1:
        raise ValueError(f"sequence_window must be >= 1, got {sequence_window}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")


def _params(spec: DatasetSpec, method: str, threshold: float, sequence_threshold: float,
            sequence_window: int, val_fraction: float, seed: int, input_size: tuple[int, int]) -> dict:
    """Everything a split depends on besides the images: the cache key."""
    return {"method": method, "threshold": threshold, "sequence_threshold": sequence_threshold,
            "sequence_window": sequence_window, "val_fraction": val_fraction, "seed": seed,
            "crop": spec.crop and list(spec.crop), "input_size": list(input_size), "version": SPLIT_VERSION}


def _read_cached(path: Path | None, fingerprint: str, params: dict) -> Split | None:
    if path is None or not path.is_file():
        return None
    try:
        cached = Split.from_json(path)
    except DataError:
        return None  # a damaged cache entry is recomputed and overwritten
    return cached if cached.params == params and cached.fingerprint == fingerprint else None


def cached_split(spec: DatasetSpec, items: list[Item], *, cache_dir: Path, method: str = DEFAULT_METHOD,
                 threshold: float = 0.9, sequence_threshold: float = 0.8, sequence_window: int = 1,
                 val_fraction: float = 0.2, seed: int = 0, input_size: tuple[int, int] = INPUT_SIZE
                 ) -> Split | None:
    """The split ``compute_split`` would return from its cache, or None: reads, computes nothing
    (``depth-grid run --dry-run``)."""
    fingerprint, _ = items_fingerprint(items, cache_dir, hash_missing=False)  # a folder never split: None
    if fingerprint is None:
        return None
    params = _params(spec, method, threshold, sequence_threshold, sequence_window, val_fraction, seed,
                     input_size)
    return _read_cached(cache_path(cache_dir, fingerprint, params), fingerprint, params)


def _splittable(spec: DatasetSpec, items: list[Item] | None) -> list[Item]:
    """``items`` (default: the whole list of ``spec``), at least two of them."""
    items = index_dataset(spec, require_depth=False) if items is None else list(items)
    if not items:
        raise DataError(f"{spec.list_path}: dataset is empty; nothing to split")
    if len(items) < 2:
        raise DataError(f"{spec.list_path}: only one image ({items[0].name}); a split needs at least two")
    return items


def _annotate(report: dict, val_fraction: float, sizes: np.ndarray, links: dict, emb: Embeddings,
              n_items: int) -> None:
    """Add to the leakage report: a warning when the validation share misses its target (the
    largest cluster is too big to move), the sequence links, and where the embeddings came from."""
    share = report["val_share"]
    if abs(share - val_fraction) > VAL_TOLERANCE:
        report["warnings"] = [f"validation share {share:.3f} is outside {val_fraction} +- "
                              f"{VAL_TOLERANCE}: the largest cluster holds {int(sizes[0])} images"]
    if links:
        report["sequence_links"] = links
    report["embedding"] = {"model": emb.model_id, "computed": emb.computed, "cached": n_items - emb.computed}


def compute_split(
    spec: DatasetSpec,
    items: list[Item] | None = None,
    *,
    method: str = DEFAULT_METHOD,
    threshold: float = 0.9,
    sequence_threshold: float = 0.8,
    sequence_window: int = 1,
    val_fraction: float = 0.2,
    seed: int = 0,
    cache_dir: Path | None = Path("results/splits"),
    batch_size: int = 32,
    device: str | torch.device | None = None,
    input_size: tuple[int, int] = INPUT_SIZE,
) -> Split:
    """Split ``items`` (default: the whole list of ``spec``) into train and validation.

    Args:
        method: one of ``METHODS`` (module docstring).
        threshold: strict link: cosine >= threshold joins two images (the paper's 0.9).
        sequence_threshold: looser link for list/name neighbours (``sequence`` method only;
            no effect at or above ``threshold``).
        sequence_window: how many places apart (in list or name order) count as neighbours.
        cache_dir: split JSONs (``<fingerprint>-<method>-<params>.json``) and the embedding
            cache live here; ``None`` disables both. Pass an absolute path.
        device: for embeddings and similarities; default CUDA when available.

    Raises:
        DataError: empty or one-image dataset, unreadable or corrupt image (named).
    """
    _check_method(method)
    _check_args(threshold, sequence_threshold, sequence_window, val_fraction)
    items = _splittable(spec, items)
    names = [it.name for it in items]
    fingerprint, hashes = items_fingerprint(items, cache_dir)
    params = _params(spec, method, threshold, sequence_threshold, sequence_window, val_fraction, seed,
                     input_size)
    path = cache_path(cache_dir, fingerprint, params) if cache_dir is not None else None
    cached = _read_cached(path, fingerprint, params)
    if cached is not None:
        return cached
    from grid.split.embed import embed_items, resolve_device  # torch: only when a split is computed
    from grid.split.report import leakage_report

    dev = resolve_device(device)
    t0 = time.perf_counter()
    emb = embed_items(items, spec, cache_dir=cache_dir, batch_size=batch_size, device=dev,
                      input_size=input_size, hashes=hashes or _hash_items(items))
    t1 = time.perf_counter()
    labels, links = link_graph(
        emb.vectors, names, method="sequence" if method == "random" else method, threshold=threshold,
        sequence_threshold=sequence_threshold, sequence_window=sequence_window, device=dev)
    ranks, sizes = rank_clusters(labels, seed)
    is_val = METHODS[method].assign(ranks, sizes, val_fraction, seed)
    t2 = time.perf_counter()
    report = leakage_report(names, ranks, is_val, emb.vectors, threshold=threshold, device=dev)
    _annotate(report, val_fraction, sizes, links, emb, len(items))
    report["timing_s"] = {"embed": round(t1 - t0, 3), "cluster": round(t2 - t1, 3),
                          "report": round(time.perf_counter() - t2, 3)}
    split = Split(
        train=[n for n, v in zip(names, is_val.tolist(), strict=True) if not v],
        val=[n for n, v in zip(names, is_val.tolist(), strict=True) if v],
        cluster_of={n: int(r) for n, r in zip(names, ranks.tolist(), strict=True)},
        params=params, embedding_model=emb.model_id, fingerprint=fingerprint, report=report)
    if path is not None:
        split.to_json(path)
    return split
