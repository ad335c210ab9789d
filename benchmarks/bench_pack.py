"""Packed data against the loose files, measured in one run on CIL-layout synthetic data.

    python benchmarks/bench_pack.py                # 48 synthetic items at 426x560
    python benchmarks/bench_pack.py --items 96 --repeats 3
    python benchmarks/bench_pack.py --nyu ../shared/data/nyu_labeled_train   # also real pairs: max depth error

Prints: pack size / loose size (tar headers and padding only: nothing is re-encoded or
compressed, depth is exact); the time ``depth-grid pack`` takes (every item checked, then
written); reader throughput (``DepthDataset``, ``train=True``, one thread, each item's best of
``--repeats``) from a node-cached pack / from the loose files (target >= 0.95); and the split
fingerprint of a folder of the competition's 23,971 items once remembered (a stat per file, no
image read; target < 5 s).
Then the same for ``--depth mm16`` (size target <= 0.5), and the cold start through one real
S3 server (moto, server mode, on 127.0.0.1: ``tests/s3_server.py``): a trial's start to its
first batch from the packed bucket (manifest, every shard into an empty node cache, first batch)
/ from the same loose files in the same server, every file fetched onto the node first as
``file_mounts`` / rsync does (then the first batch); target <= 0.3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from grid import synth  # noqa: E402
from grid.experiment.pack import pack_dataset  # noqa: E402
from grid.split.compute import items_fingerprint  # noqa: E402
from trainables.data import DatasetSpec, index_dataset, load_pair  # noqa: E402
from trainables.dataset import DepthDataset  # noqa: E402
from trainables.packed import open_pack  # noqa: E402

COMPETITION_ITEMS = 23_971


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def throughputs(specs: list[DatasetSpec], repeats: int) -> list[float]:
    """Training samples per second on one thread of each dataset: each item's best time over
    ``repeats`` passes, the datasets read item by item in turn with the same seed (the same
    flips), so that a shared machine's noise hits both alike and is filtered per item."""
    sets = [DepthDataset(index_dataset(s), s, size=(426, 560), train=True, augment="flip") for s in specs]
    best = [[float("inf")] * len(d) for d in sets]
    for _ in range(repeats):
        for i in range(len(sets[0])):
            for d, b in zip(sets, best, strict=True):
                torch.manual_seed(i)
                t0 = time.perf_counter()
                d[i]
                b[i] = min(b[i], time.perf_counter() - t0)
    return [len(b) / sum(b) for b in best]


def real_pairs(root: Path, tmp: Path, repeats: int) -> None:
    """NYU-style pairs (JPEG + 8-bit PNG depth, ``--depth-scale 25.5 --crop eigen`` as the
    shared data is read): size ratio, the largest depth difference over every pixel (metres),
    reader throughput."""
    spec = DatasetSpec.detect(root, depth_scale=25.5, crop="eigen")
    summary = pack_dataset(spec, str(tmp / "nyu-packed"), shard_mb=64)
    packed = open_pack(tmp / "nyu-packed", tmp / "cache")
    packed.pack.fetch()
    worst = 0.0
    for a, b in zip(index_dataset(spec), index_dataset(packed), strict=True):
        (ra, da), (rb, db) = load_pair(a, spec), load_pair(b, packed)
        assert (ra == rb).all()
        worst = max(worst, float(abs(da - db).max()))
    print(f"[{root.name}] {summary.items} items, pack size / loose size {summary.bytes / summary.loose_bytes:.3f}, "
          f"max depth error {worst:g} m (RGB identical)")
    fast, slow = throughputs([packed, spec], repeats)
    print(f"[{root.name}] reader throughput: packed {fast:.1f} / loose {slow:.1f} samples/s per core = {fast / slow:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48, help="synthetic items (scenes x 8 views)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nyu", type=Path, help="also a real pairs dataset (NYU layout)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_pack") as tmp:
        tmp = Path(tmp)
        loose = synth.generate(tmp / "loose", scenes=max(1, args.items // 8), views=8, size=(426, 560), seed=0)
        spec = DatasetSpec.detect(loose)
        t0 = time.perf_counter()
        summary = pack_dataset(spec, str(tmp / "packed"), shard_mb=16)
        pack_s = time.perf_counter() - t0
        packed = open_pack(tmp / "packed", tmp / "cache")
        packed.pack.fetch()  # the node cache filled (a local pack: checked in place once)
        print(f"items: {summary.items} at 426x560, {summary.shards} shard(s)")
        print(f"pack size / loose size: {summary.bytes / folder_bytes(loose):.3f} "
              f"({summary.bytes / 2**20:.1f} / {folder_bytes(loose) / 2**20:.1f} MiB)")
        print(f"pack time: {pack_s:.2f} s ({pack_s / summary.items * 1000:.1f} ms per item, check included)")
        fast, slow = throughputs([packed, spec], args.repeats)
        print(f"reader throughput: packed {fast:.1f} / loose {slow:.1f} samples/s per core = {fast / slow:.3f}")
        fingerprint_24k(tmp)
        t0 = time.perf_counter()
        items_fingerprint(index_dataset(packed), None)
        print(f"split fingerprint of the pack (manifest only): {time.perf_counter() - t0:.4f} s")
        mm16(spec, loose, tmp, args.repeats)
        cold_start(spec, loose, tmp, max(1, args.repeats))
        if args.nyu:
            real_pairs(args.nyu, tmp, max(1, args.repeats // 2))
    return 0


def fingerprint_24k(tmp: Path) -> None:
    """The split fingerprint of a folder of the competition's 23,971 items (tiny files: the
    fingerprint stats them, their size does not matter), the second time it is asked (the first
    hashes every RGB, once per folder)."""
    import io

    import numpy as np
    from PIL import Image

    png, npy = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    np.save(npy, np.ones((8, 8), np.float32))
    rgb, depth = png.getvalue(), npy.getvalue()
    big = tmp / "24k"
    big.mkdir()
    lines = []
    for i in range(COMPETITION_ITEMS):
        (big / f"s{i:06d}_rgb.png").write_bytes(rgb)
        (big / f"s{i:06d}_depth.npy").write_bytes(depth)
        lines.append(f"s{i:06d}_rgb.png s{i:06d}_depth.npy")
    (big / "train_list.txt").write_text("\n".join(lines) + "\n")
    items = index_dataset(DatasetSpec.detect(big))
    t0 = time.perf_counter()
    items_fingerprint(items, tmp / "splits")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, hashes = items_fingerprint(items, tmp / "splits")
    again = time.perf_counter() - t0
    assert hashes is None  # remembered: no image read
    print(f"split fingerprint of {COMPETITION_ITEMS} items: {again:.2f} s (a stat per file; the folder's "
          f"first split hashes every RGB once: {first:.1f} s here, warm file cache)")
    shutil.rmtree(big)


def first_batch(spec: DatasetSpec) -> None:
    """What a trial does before its first step: index the data, one shuffled batch of 8."""
    data = DepthDataset(index_dataset(spec), spec, size=(426, 560), train=True, augment="flip")
    torch.manual_seed(0)
    next(iter(torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, num_workers=0)))


def from_packed_bucket(uri: str, cache: Path) -> float:
    """A fresh trial on a fresh node: no manifest in memory, an empty cache."""
    from trainables import packed as packed_mod

    packed_mod._MANIFESTS.clear(), packed_mod._MAPS.clear(), packed_mod._ROOM.clear()
    t0 = time.perf_counter()
    spec = open_pack(uri, cache)
    spec.pack.fetch()
    first_batch(spec)
    return time.perf_counter() - t0


def from_loose_bucket(uri: str, node: Path) -> float:
    """Every loose file onto the node (one listing, then each file, as many at once as the pack's
    shards are fetched), then the first batch from the local copy."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.fs as pafs

    from trainables.packed import FETCH_THREADS, filesystem

    t0 = time.perf_counter()
    fs, root = filesystem(uri)
    files = [i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if i.type == pafs.FileType.File]

    def fetch(path: str) -> None:
        target = node / path[len(root):].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(path) as src:
            target.write_bytes(src.read())

    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        list(pool.map(fetch, files))
    first_batch(DatasetSpec.detect(node))
    return time.perf_counter() - t0


def cold_start(spec: DatasetSpec, loose: Path, tmp: Path, repeats: int) -> None:
    """The mm16 pack and the loose files in one moto server; each cold start best of ``repeats``,
    the two interleaved."""
    import pyarrow.fs as pafs

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from s3_server import S3Server

    server = S3Server(tmp)
    os.environ.update(server.env())
    try:
        bucket = server.bucket("bench")
        pack_dataset(spec, f"{bucket}/packed", shard_mb=8, depth="mm16")  # a few shards, fetched side by side
        pafs.copy_files(str(loose), "bench/loose", destination_filesystem=pafs.S3FileSystem(
            endpoint_override=server.endpoint, access_key="testing", secret_key="testing", region="us-east-1"))
        packed_s, loose_s = [], []
        for n in range(repeats):
            packed_s.append(from_packed_bucket(f"{bucket}/packed", tmp / f"node-p{n}"))
            loose_s.append(from_loose_bucket(f"{bucket}/loose", tmp / f"node-l{n}"))
        gets = sum(1 for m, _ in server.requests() if m == "GET")
        print(f"cold start through one S3 server on loopback (trial start to first batch of 8): packed "
              f"{min(packed_s):.2f} s / loose {min(loose_s):.2f} s = {min(packed_s) / min(loose_s):.3f} "
              f"(best of {repeats}; {gets} GETs in all)")
    finally:
        server.stop()


def mm16(spec: DatasetSpec, loose: Path, tmp: Path, repeats: int) -> None:
    """``--depth mm16``: size, largest depth error, and what it does to si_rmse: each item scored
    against a fixed prediction (the true depth times a smooth, seeded error field), with the
    exact and with the millimetre ground truth."""
    import numpy as np

    from trainables.metrics import si_rmse

    summary = pack_dataset(spec, str(tmp / "mm16"), shard_mb=16, depth="mm16")
    packed = open_pack(tmp / "mm16", tmp / "cache")
    packed.pack.fetch()
    print(f"--depth mm16: pack size / loose size {summary.bytes / folder_bytes(loose):.3f}")
    rng = np.random.default_rng(0)
    worst, deltas = 0.0, []
    for a, b in zip(index_dataset(spec), index_dataset(packed), strict=True):
        (_, exact), (_, mm) = load_pair(a, spec), load_pair(b, packed)
        worst = max(worst, float(np.abs(exact - mm).max()))
        h, w = exact.shape
        field = np.exp(0.1 * np.sin(np.linspace(0, rng.uniform(2, 6), w))[None, :] + rng.normal(0, 0.05, (h, w)))
        pred = (exact * field).astype(np.float32)
        deltas.append(abs(si_rmse(pred, exact) - si_rmse(pred, mm)))
    print(f"--depth mm16: largest depth error {worst * 1000:.3f} mm; si_rmse moved by {np.mean(deltas):.2e} "
          f"on average, {np.max(deltas):.2e} at most ({len(deltas)} items)")
    fast, slow = throughputs([packed, spec], repeats)
    print(f"--depth mm16: reader throughput packed {fast:.1f} / loose {slow:.1f} samples/s per core = {fast / slow:.3f}")


if __name__ == "__main__":
    sys.exit(main())
