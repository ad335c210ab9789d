"""Reader throughput versus bare decoding, and synthetic generation time, measured in one run.

    python benchmarks/bench_data.py                # 200 synthetic images at 426x560
    python benchmarks/bench_data.py --nyu ../shared/data/nyu_labeled_train   # also real pairs

Everything runs on one thread (``samples/s per core``). The reader is ``DepthDataset`` with
``train=False`` and ``train=True`` (normalised image tensor, depth tensor, flip); the baseline
is bare ``PIL`` + ``numpy`` decoding of the same files (uint8 RGB array + float depth array).
Targets: reader within 10% of bare decoding; 200 synthetic images at 426x560 in < 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision.io as tvio  # noqa: E402
from PIL import Image  # noqa: E402

from grid import synth  # noqa: E402
from trainables.data import DatasetSpec, index_dataset  # noqa: E402
from trainables.dataset import DepthDataset


def bare_decode(it, spec: DatasetSpec, jpeg_via_torchvision: bool = False) -> None:
    """What any reader has to do at least: decode both files into arrays (the crop is a view).

    ``jpeg_via_torchvision`` decodes JPEGs as the reader does, to show its own overhead."""
    if jpeg_via_torchvision and it.rgb.suffix.lower() in (".jpg", ".jpeg"):
        rgb = tvio.decode_jpeg(tvio.read_file(str(it.rgb)), mode=tvio.ImageReadMode.RGB).permute(1, 2, 0).numpy()
    else:
        with Image.open(it.rgb) as img:
            rgb = np.asarray(img.convert("RGB"))
    if it.depth.suffix == ".npy":
        depth = np.load(it.depth)
    else:
        with Image.open(it.depth) as img:
            depth = np.asarray(img).astype(np.float32) / spec.depth_scale
    assert rgb.shape[:2] == depth.shape[:2]


def compare(label: str, spec: DatasetSpec, repeats: int) -> None:
    """Per item, each method back to back (same page-cache state), CPU time of this process;
    the minimum per item over ``repeats`` rounds, so bursts of load from other processes on
    a shared machine do not favour one method."""
    items = index_dataset(spec)
    evaluate, train = DepthDataset(items, spec), DepthDataset(items, spec, train=True)

    runs = {
        "bare PIL + numpy decode": lambda i: bare_decode(items[i], spec),
        "bare, JPEG via torchvision": lambda i: bare_decode(items[i], spec, jpeg_via_torchvision=True),
        "DepthDataset train=False": lambda i: evaluate[i],
        "DepthDataset train=True": lambda i: train[i],
    }
    if items[0].rgb.suffix.lower() not in (".jpg", ".jpeg"):
        del runs["bare, JPEG via torchvision"]
    best = {k: np.full(len(items), np.inf) for k in runs}
    for _ in range(repeats):
        for i in range(len(items)):
            for key, fn in runs.items():
                torch.manual_seed(i)  # the same random flip for this item in every round (untimed)
                t = time.process_time()
                fn(i)
                best[key][i] = min(best[key][i], time.process_time() - t)
    rate = {k: len(items) / v.sum() for k, v in best.items()}
    bare = rate["bare PIL + numpy decode"]
    h, w = evaluate[0]["image"].shape[-2:]
    print(f"\n[{label}] {len(items)} items at {h}x{w}, min of {repeats} rounds per item, 1 thread, CPU time")
    for key, r in rate.items():
        ratio = "" if key.startswith("bare PIL") else f"   ratio to bare PIL {r / bare:.3f}"
        print(f"  {key:28s}: {r:7.1f} samples/s per core{ratio}")
    print("  target: DepthDataset ratio >= 0.90")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200, help="synthetic images (scenes x 8 views)")
    ap.add_argument("--size", default="426x560")
    ap.add_argument("--workers", type=int, default=1, help="processes for the generation timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None, help="measure this cil/pairs folder only (no generation)")
    ap.add_argument("--nyu", type=Path, default=None, help="also measure an RGB + PNG depth folder (eigen crop)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    h, w = (int(v) for v in args.size.split("x"))
    views = 8
    scenes = -(-args.images // views)
    if args.data is not None:  # an existing dataset instead of freshly generated scenes
        compare(f"{args.data}", DatasetSpec.detect(args.data), args.repeats)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        out = Path(tmp) / "synth"
        t = time.perf_counter()
        synth.generate(out, scenes=scenes, views=views, size=(h, w), seed=0, workers=args.workers)
        dt = time.perf_counter() - t
        n = scenes * views
        print(f"[synthetic generation] {n} images at {h}x{w} with {args.workers} process(es): {dt:.1f} s "
              f"({dt / n * 1000:.0f} ms/image; target < 60 s for 200 on 2 cores)")
        compare("synthetic cil (.png + .npy)", DatasetSpec(out, format="cil"), args.repeats)
    if args.nyu is not None:
        compare("NYU pairs (.jpg + 8-bit .png, eigen crop)",
                DatasetSpec(args.nyu, format="pairs", depth_scale=25.5, crop="eigen"), args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
