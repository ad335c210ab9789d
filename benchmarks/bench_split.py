"""Benchmark of the leakage-free split: similarity + components at scale, and embedding speed.

    python benchmarks/bench_split.py [--n 24000] [--dim 1280] [--threads 2] [--images 64]

1. ``cluster_labels`` (blockwise cosine similarity over the upper triangle, strict pairs, sequence
   links, connected components) on ``--n`` synthetic unit embeddings of dimension ``--dim``,
   shaped like real ones: groups of near-duplicate "frames" (cosine ~0.9-0.97 inside a group),
   all sharing a common direction (cosine ~0.5 between unrelated images, as with ReLU features).
   Prints the time and the process's peak resident memory (the embeddings themselves included).
2. The leakage report's cross-split search (validation rows x training columns).
3. Embedding throughput of MobileNetV2 on the CPU: images/s for the whole path (PNG decode,
   resize to 224x224, forward) and for the forward pass alone.
Targets from the issue: step 1 under 60 s and 2 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def synthetic_embeddings(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Unit rows in groups of 1-15 frames; names sorted by group then frame, like a video list."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim).astype(np.float32)
    common /= np.linalg.norm(common)
    out = np.empty((n, dim), np.float32)
    names, row, group = [], 0, 0
    while row < n:
        size = min(int(rng.integers(1, 16)), n - row)
        centre = rng.standard_normal(dim).astype(np.float32)
        centre = centre / np.linalg.norm(centre) + common  # cosine ~0.5 to every other group
        noise = rng.standard_normal((size, dim)).astype(np.float32) * np.float32(0.008)
        block = centre + noise
        out[row:row + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
        names += [f"g{group:05d}/frame_{k:03d}.png" for k in range(size)]
        row, group = row + size, group + 1
    return out, names


def bench_clusters(n: int, dim: int) -> None:
    from grid.split.compute import cluster_labels, rank_clusters
    from grid.split.report import leakage_report

    vectors, names = synthetic_embeddings(n, dim)
    base = peak_rss_mb()
    print(f"{n} embeddings of dim {dim} ({vectors.nbytes / 2**20:.0f} MB); peak RSS before: {base:.0f} MB")
    for method in ("paper", "sequence"):
        t = time.perf_counter()
        labels = cluster_labels(vectors, names, method=method)
        dt = time.perf_counter() - t
        sizes = np.bincount(labels)
        print(f"  {method:8s}: similarity + components {dt:6.1f} s, {len(sizes)} clusters "
              f"(largest {sizes.max()}), peak RSS {peak_rss_mb():.0f} MB")
    ranks, sizes = rank_clusters(labels, 0)
    is_val = np.isin(ranks, np.arange(0, len(sizes), 5))  # every 5th cluster: ~20% of the images
    t = time.perf_counter()
    rep = leakage_report(names, ranks, is_val, vectors, threshold=0.9)
    print(f"  leakage report (val {rep['val']} x train {rep['train']}): {time.perf_counter() - t:.1f} s, "
          f"max cross-split similarity {rep['max_cross_similarity']}, peak RSS {peak_rss_mb():.0f} MB")


def bench_embedding(images: int, batch: int) -> None:
    from grid.split.embed import build_embedder, embed_images
    from trainables.data import DatasetSpec, index_dataset

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = []
        for k in range(images):  # NYU-sized frames after the Eigen crop
            Image.fromarray(rng.integers(0, 256, (426, 560, 3), dtype=np.uint8)).save(root / f"{k:04d}_rgb.png")
            lines.append(f"{k:04d}_rgb.png {k:04d}_depth.npy")
        (root / "test_list.txt").write_text("\n".join(lines) + "\n")
        spec = DatasetSpec(root, list_file="test_list.txt")
        items = index_dataset(spec, require_depth=False)
        model = build_embedder(torch.device("cpu"))
        embed_images(items[:batch], spec, batch_size=batch, device="cpu", model=model)  # warm-up
        t = time.perf_counter()
        embed_images(items, spec, batch_size=batch, device="cpu", model=model)
        full = images / (time.perf_counter() - t)
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        t = time.perf_counter()
        for _ in range(max(1, images // batch)):
            model(x)
        fwd = batch * max(1, images // batch) / (time.perf_counter() - t)
    print(f"embedding on CPU ({torch.get_num_threads()} threads, batch {batch}, 224x224): "
          f"{full:.1f} images/s with decode + resize of 426x560 PNGs, {fwd:.1f} images/s forward only")
    print(f"  -> 24,000 images: ~{24000 / full / 60:.0f} min on this CPU (once; later runs hit the cache)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=24000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=64, help="images for the embedding benchmark (0: skip)")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench_clusters(args.n, args.dim)
    if args.images:
        bench_embedding(args.images, args.batch)


if __name__ == "__main__":
    main()
