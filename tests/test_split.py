"""The leakage-free split: real MobileNetV2 embeddings of generated scenes, graph and assignment
rules on hand-made vectors, caches, errors and the CLI."""

from __future__ import annotations

import collections
import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_cil

import grid.split.graph as split_graph
from grid.cli import command
from grid.split.compute import (
    METHODS,
    Split,
    assign_clusters,
    cluster_labels,
    compute_split,
    link_graph,
    rank_clusters,
)
from grid.split.graph import cross_split_pairs, sequence_pairs, strict_pairs
from trainables.data import DataError, DatasetSpec, index_dataset

main = command("split")

F32 = np.float32


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory) -> Path:
    """One embedding cache for the module, so each image is embedded once."""
    return tmp_path_factory.mktemp("split_cache")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, mobilenet_weights) -> tuple[DatasetSpec, dict[str, str]]:
    """8 drifting walks of 10 views and 6 jittered scenes of 4 views, in one competition list."""
    from grid.synth import generate

    root = tmp_path_factory.mktemp("scenes")
    lines, scene_of = [], {}
    for sub, n_scenes, views, motion, seed in (("drift", 8, 10, "drift", 0), ("jitter", 6, 4, "jitter", 1)):
        generate(root / sub, scenes=n_scenes, views=views, size=(48, 64), seed=seed, motion=motion)
        with open(root / sub / "scenes.csv") as fh:
            for row in csv.DictReader(fh):
                name = f"{sub}/{row['item']}"
                scene_of[name] = f"{sub}{row['scene']}"
                lines.append(f"{name} {name.replace('_rgb.png', '_depth.npy')}")
    (root / "train_list.txt").write_text("\n".join(lines) + "\n")
    return DatasetSpec(root, format="cil"), scene_of


def _distinct(root: Path, n: int) -> DatasetSpec:
    """``n`` different rooms, one view each (random-noise images all look alike to MobileNet).
    Scene ``k`` does not depend on ``n``, so a larger ``n`` grows the same dataset."""
    from grid.synth import generate

    return DatasetSpec(generate(root, scenes=n, views=1, size=(32, 32), seed=7))


def _sides_per_scene(split: Split, scene_of: dict[str, str]) -> dict[str, set[bool]]:
    val = set(split.val)
    sides = collections.defaultdict(set)
    for name, scene in scene_of.items():
        sides[scene].add(name in val)
    return sides


# ---- generated scenes, real embeddings -------------------------------------------------------

def test_scenes_land_wholly_on_one_side(scenes, emb_cache):
    spec, scene_of = scenes
    split = compute_split(spec, cache_dir=emb_cache)
    assert sorted(split.train + split.val) == sorted(scene_of)
    assert all(len(s) == 1 for s in _sides_per_scene(split, scene_of).values())
    share = len(split.val) / len(scene_of)
    assert 0.15 <= share <= 0.25
    rep = split.report
    assert rep["straddling_clusters"] == 0 and rep["cross_pairs_above_threshold"] == 0
    assert rep["max_cross_similarity"] < 0.9
    assert rep["sequence_links"]["name"]["used"] and rep["sequence_links"]["links"] > 0
    sims = [p["similarity"] for p in rep["nearest_cross_pairs"]]
    assert sims == sorted(sims, reverse=True) and len(sims) == 10
    # the drift is real: the paper's fixed 0.9 breaks at least one walk into several clusters
    paper = compute_split(spec, method="paper", cache_dir=emb_cache)
    pieces = collections.defaultdict(set)
    for name, scene in scene_of.items():
        pieces[scene].add(paper.cluster_of[name])
    assert max(len(p) for p in pieces.values()) > 1
    assert paper.report["embedding"]["computed"] == 0  # the images were embedded once


def test_random_split_straddles_scenes(scenes, emb_cache):
    spec, scene_of = scenes
    naive = compute_split(spec, method="random", cache_dir=emb_cache)
    clustered = compute_split(spec, cache_dir=emb_cache)
    assert set(naive.val) != set(clustered.val)
    assert any(len(s) == 2 for s in _sides_per_scene(naive, scene_of).values())
    assert naive.report["straddling_clusters"] > 0
    assert naive.report["max_cross_similarity"] > clustered.report["max_cross_similarity"]
    assert len(naive.val) == round(0.2 * len(scene_of))


def test_seed_determinism_and_split_cache(scenes, emb_cache, tmp_path):
    spec, _ = scenes
    a = compute_split(spec, seed=3, cache_dir=emb_cache)
    fresh = tmp_path / "fresh"  # no cached split, but the embeddings are there
    shutil.copytree(emb_cache / "embeddings", fresh / "embeddings")
    b = compute_split(spec, seed=3, cache_dir=fresh)
    assert (a.train, a.val, a.cluster_of) == (b.train, b.val, b.cluster_of)
    assert b.report["embedding"]["computed"] == 0
    others = [compute_split(spec, seed=s, cache_dir=fresh).val for s in (4, 5, 6)]
    assert any(set(v) != set(a.val) for v in others)  # equal-size clusters: the seed picks
    cached = sorted(fresh.glob(f"{a.fingerprint}-sequence-*.json"))
    assert len(cached) == 4
    assert Split.from_json(cached[0]).fingerprint == a.fingerprint


# ---- threshold semantics and the graph, on hand-made unit vectors ----------------------------

def _pair(cos: float) -> np.ndarray:
    """Two unit vectors in R^2 whose float32 dot product is exactly ``F32(cos)``."""
    x = F32(cos)
    return np.array([[1, 0], [x, np.sqrt(F32(1) - x * x)]], F32)


@pytest.mark.parametrize("cos, linked", [
    (0.9, True),  # exactly at the threshold: linked
    (np.nextafter(F32(0.9), F32(0)), False),  # one float32 step below: not linked
    (0.95, True),
    (0.5, False),
])
def test_threshold_semantics(cos, linked):
    vec = _pair(cos)
    assert float(vec[0] @ vec[1]) == float(F32(cos))
    i, _ = strict_pairs(vec, 0.9)
    assert (len(i) == 1) == linked
    labels = cluster_labels(vec, ["a", "b"], method="paper", threshold=0.9)
    assert (labels[0] == labels[1]) == linked
    si, _, info = sequence_pairs(vec, ["a", "b"], 0.9, window=1)
    assert (len(si) == 1) == linked and info["links"] == len(si)


def _chain(n: int, cos: float) -> np.ndarray:
    """``n`` unit vectors on a circle, consecutive ones at cosine ``cos``, in their own 2-D plane."""
    theta = np.arccos(cos) * np.arange(n)
    return np.stack([np.cos(theta), np.sin(theta)], 1).astype(F32)


def test_sequence_links_need_list_or_name_neighbours():
    chain = np.zeros((5, 16), F32)
    chain[:, :2] = _chain(5, 0.85)  # consecutive 0.85, two apart 0.445
    others = np.eye(16, dtype=F32)[2:14]  # 12 unrelated images
    # in order: the walk's frames are list neighbours
    vec = np.concatenate([chain, others])
    names = [f"walk/{k:03d}.png" for k in range(5)] + [f"room/{k:03d}.png" for k in range(12)]
    seq = cluster_labels(vec, names)
    assert len(set(seq[:5])) == 1 and len(set(seq)) == 13
    paper = cluster_labels(vec, names, method="paper")
    assert len(set(paper)) == 17
    # the same frames, 3 places apart in the list and in name order: beyond the window of 2
    order = [k for c in range(5) for k in ([c] + ([5 + 3 * c, 6 + 3 * c, 7 + 3 * c] if c < 4 else []))]
    shuffled = [f"img_{p:03d}.png" for p in range(len(order))]
    apart = cluster_labels(vec[order], shuffled)
    assert len(set(apart[[order.index(c) for c in range(5)]])) == 5
    # the window counts places in list order or in natural name order (identical images, so
    # every candidate pair is linked; too few images to judge the orders, so both are trusted)
    same = np.tile(np.eye(1, 4, dtype=F32), (12, 1))
    i, j, _ = sequence_pairs(same, [f"img_{k:03d}.png" for k in range(12)], 0.5, window=4)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(a, b) for a in range(12) for b in range(a + 1, min(a + 5, 12))}
    named = ["f10.png", "f9.png", "x.png", "f1.png"]  # name order: f1, f9, f10, x
    i, j, _ = sequence_pairs(same[:4], named, 0.5, window=1)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(0, 1), (1, 2), (2, 3), (1, 3), (0, 2)}


def test_orders_are_used_only_when_they_group_similar_images():
    rng = np.random.default_rng(0)
    walks = []
    for _ in range(30):  # 30 walks of 6 frames, each in its own random plane of R^256
        basis = np.linalg.qr(rng.normal(size=(256, 2)))[0].T  # (2, 256) orthonormal
        walks.append(_chain(6, 0.85) @ basis)
    vec = np.concatenate(walks).astype(F32)
    ordered = [f"walk{w:02d}/frame_{f}.png" for w in range(30) for f in range(6)]
    labels, info = link_graph(vec, ordered)
    assert info["list"]["used"] and info["name"]["used"] and info["list"]["lift"] > 5
    assert len(set(labels)) == 30 and all(len(set(labels[6 * w:6 * w + 6])) == 1 for w in range(30))
    # shuffled list, names that say nothing: no evidence, so exactly the paper's clusters
    perm = rng.permutation(len(vec))
    # seeded: str hashes change per process (PYTHONHASHSEED), and some draws of random names do
    # happen to sort similar images together (about 1 in 25 failed)
    hashed = [f"{v:06x}.png" for v in np.random.default_rng(1).choice(1 << 24, len(vec), replace=False)]
    labels, info = link_graph(vec[perm], hashed)
    assert not info["list"]["used"] and not info["name"]["used"] and info["links"] == 0
    assert (labels == cluster_labels(vec[perm], hashed, method="paper")).all()
    # in order, but every image resembles every other at 0.85: an order that proves nothing
    common = rng.normal(size=256)
    common /= np.linalg.norm(common)
    own = np.linalg.qr(rng.normal(size=(256, 100)))[0].T  # orthonormal, orthogonal-ish to common
    own -= (own @ common)[:, None] * common
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    alike = (np.sqrt(0.85) * common + np.sqrt(0.15) * own).astype(F32)  # pairwise cosine 0.85
    names = [f"img_{k:03d}.png" for k in range(100)]
    labels, info = link_graph(alike, names)
    assert not info["list"]["used"] and len(set(labels)) == 100


def test_blockwise_pairs_match_dense(monkeypatch):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 64))
    vec = centres[rng.integers(0, 30, 400)] + rng.normal(scale=0.35, size=(400, 64))
    vec = (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(F32)
    dense = vec @ vec.T
    monkeypatch.setattr(split_graph, "BLOCK_ELEMENTS", 4000)  # 10 rows a block: 40 blocks
    i, j = strict_pairs(vec, 0.8)
    want = {(a, b) for a, b in zip(*np.nonzero(np.triu(dense >= F32(0.8), 1)), strict=True)}
    assert len(want) > 500 and set(zip(i.tolist(), j.tolist(), strict=True)) == want
    # reduced to a spanning forest when too many pairs are held: same components
    monkeypatch.setattr(split_graph, "MAX_HELD_EDGES", 50)
    full = cluster_labels(vec, [str(k) for k in range(400)], method="paper", threshold=0.8)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = zip(*want, strict=True)
    ref = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(400, 400)), directed=False)[1]
    assert len(set(zip(full.tolist(), ref.tolist(), strict=True))) == len(set(ref.tolist())) == len(set(full))
    # cross-split search: the best (val, train) pairs and the count above the threshold
    is_val = rng.uniform(size=400) < 0.2
    pairs, count = cross_split_pairs(vec, is_val, threshold=0.8, k=5)
    cross = np.where(is_val[:, None] & ~is_val[None, :], dense, -2)
    assert count == int((cross >= F32(0.8)).sum())
    assert np.allclose([s for _, _, s in pairs], np.sort(cross.ravel())[::-1][:5], atol=1e-5)
    assert all(is_val[v] and not is_val[t] for v, t, _ in pairs)


# ---- assignment rules -------------------------------------------------------------------------

def test_clusters_ranked_by_size_ties_by_seed():
    labels = np.repeat(np.arange(40), 2)  # 40 clusters of 2
    labels = np.concatenate([labels, [40] * 5])  # and one of 5
    ranks, sizes = rank_clusters(labels, seed=0)
    assert sizes[0] == 5 and (ranks[-5:] == 0).all() and list(sizes[1:]) == [2] * 40
    again, _ = rank_clusters(labels, seed=0)
    other, _ = rank_clusters(labels, seed=1)
    assert (again == ranks).all() and (other != ranks).any()


@pytest.mark.parametrize("sizes", [
    [60] + [1] * 40,  # a huge cluster (60%) is skipped
    [23, 22] + [1] * 55,  # 23 fits under 25% and is closer to 20 than 0: taken, then stop
    [30, 30, 15, 10, 5, 5, 5],
    [5] * 20,
])
def test_val_share_within_bounds(sizes):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    ranks, ranked = rank_clusters(labels, seed=0)
    is_val = assign_clusters(ranks, ranked, 0.2, 0)
    assert 0.15 <= is_val.mean() <= 0.25
    for r in np.unique(ranks):  # whole clusters only
        assert len(set(is_val[ranks == r])) == 1


def test_one_cluster_cannot_be_split():
    ranks, sizes = rank_clusters(np.zeros(10, int), seed=0)
    with pytest.raises(DataError, match="cannot form a validation set"):
        assign_clusters(ranks, sizes, 0.2, 0)


# ---- caches, errors, files --------------------------------------------------------------------

def test_embedding_cache_embeds_only_new_images(tmp_path, mobilenet_weights, monkeypatch):
    import grid.split.embed

    monkeypatch.setattr(grid.split.embed, "SHARD_SIZE", 4)  # 6 images -> shards of 4 and 2
    cache = tmp_path / "cache"
    small = _distinct(tmp_path / "small", 6)
    first = compute_split(small, cache_dir=cache)
    assert (first.report["embedding"]["computed"], first.report["embedding"]["cached"]) == (6, 0)
    shards = sorted((cache / "embeddings").glob("*/shard-*.npz"))
    assert len(shards) == 2
    again = compute_split(small, cache_dir=cache)  # the cached split itself
    assert again == first
    reseeded = compute_split(small, seed=1, cache_dir=cache)  # a new split, old embeddings
    assert reseeded.report["embedding"]["computed"] == 0
    grown = _distinct(tmp_path / "grown", 9)  # the same first 6 images
    assert compute_split(grown, cache_dir=cache).report["embedding"]["computed"] == 3
    # a damaged shard costs only the re-embedding of its images
    small_shard = min(shards, key=lambda p: p.stat().st_size)
    small_shard.write_bytes(b"garbage")
    assert compute_split(small, seed=2, cache_dir=cache).report["embedding"]["computed"] == 2
    no_cache = compute_split(small, cache_dir=None)
    assert no_cache.report["embedding"]["computed"] == 6
    assert (no_cache.train, no_cache.val) == (first.train, first.val)


def test_dataset_errors(tmp_path, mobilenet_weights):
    spec = DatasetSpec(write_cil(tmp_path / "d", n=3, size=(16, 16)))
    items = index_dataset(spec)
    with pytest.raises(DataError, match="empty"):
        compute_split(spec, [], cache_dir=None)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train_list.txt").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        compute_split(DatasetSpec(tmp_path / "empty"), cache_dir=None)
    with pytest.raises(DataError, match="only one image"):
        compute_split(spec, items[:1], cache_dir=None)
    items[1].rgb.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=re.escape(str(items[1].rgb))):
        compute_split(spec, cache_dir=None)
    with pytest.raises(KeyError, match="valid"):
        compute_split(spec, method="nope", cache_dir=None)
    with pytest.raises(ValueError, match="sequence_threshold"):
        compute_split(spec, sequence_threshold=1.5, cache_dir=None)
    with pytest.raises(ValueError, match="val_fraction"):
        compute_split(spec, val_fraction=1.0, cache_dir=None)
    assert set(METHODS) == {"sequence", "paper", "random"}


def test_split_json_round_trip_and_bad_file(tmp_path):
    split = Split(["a.png"], ["b.png"], {"a.png": 0, "b.png": 1}, {"seed": 0}, "m", "f", {"x": 1})
    assert Split.from_json(split.to_json(tmp_path / "s.json")) == split
    (tmp_path / "bad.json").write_text(json.dumps({"train": []}))
    with pytest.raises(DataError, match="missing"):
        Split.from_json(tmp_path / "bad.json")


def test_cli_writes_split_report_and_figure(tmp_path, mobilenet_weights, capsys):
    data = _distinct(tmp_path / "d", 8).root
    out, fig = tmp_path / "split.json", tmp_path / "clusters.png"
    rc = main(["--data", str(data), "--out", str(out), "--figure", str(fig),
               "--cache-dir", str(tmp_path / "cache")])
    printed = capsys.readouterr().out
    assert rc == 0 and "highest cross-split similarity" in printed
    split = Split.from_json(out)
    assert len(split.train) + len(split.val) == 8 and split.params["method"] == "sequence"
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc = main(["--data", str(data), "--random", "--no-cache", "--out", str(out)])
    assert rc == 0 and Split.from_json(out).params["method"] == "random"
    assert main(["--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- real data --------------------------------------------------------------------------------

@pytest.mark.slow
def test_nyu_split_has_multi_image_clusters(nyu_dir, mobilenet_weights, tmp_path):
    spec = DatasetSpec(nyu_dir, format="pairs", depth_scale=25.5, crop="eigen")
    split = compute_split(spec, cache_dir=tmp_path)
    rep = split.report
    assert rep["images"] == len(index_dataset(spec))
    assert rep["multi_image_clusters"] > 0 and rep["largest_cluster"] > 1
    assert rep["straddling_clusters"] == 0 and rep["max_cross_similarity"] < 0.9
    assert 0.15 <= rep["val_share"] <= 0.25
    paper = compute_split(spec, method="paper", cache_dir=tmp_path)
    assert paper.report["multi_image_share"] <= rep["multi_image_share"]
