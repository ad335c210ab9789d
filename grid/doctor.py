"""The dataset doctor: read every item of a dataset and say what is wrong with it.

    depth-grid check --data DIR [--format cil|pairs] [--list FILE] [--depth-scale S]
                     [--crop eigen|none|T,B,L,R] [--test] [--workers N]

Prints counts, image sizes, the depth range and the valid-pixel share, then every bad item with
its reason. Exit code 0 when every item is fine, 1 when some item is bad, 2 when the dataset
folder or its list file is unusable (missing, empty, malformed, duplicate or escaping entries).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from trainables.data import (
    DataError,
    DatasetSpec,
    Item,
    ItemReport,
    index_dataset,
    inspect_item,
    load_rgb,
)

# Typical PNG depth scales, for the hint printed when the depth range looks like raw units.
SCALE_HINT = "NYU 8-bit: 25.5, NYU/ScanNet 16-bit: 1000, TUM: 5000"
MAX_PLAUSIBLE_DEPTH = 100.0  # metres; indoor and driving datasets stay well below this


@dataclass(frozen=True)
class DatasetReport:
    """Per-item reports of one dataset, with summary statistics."""

    spec: DatasetSpec
    items: list[ItemReport]

    @property
    def bad(self) -> list[ItemReport]:
        return [r for r in self.items if r.problems]

    @property
    def good(self) -> list[ItemReport]:
        return [r for r in self.items if not r.problems]

    def summary(self) -> str:
        spec, good, bad = self.spec, self.good, self.bad
        crop = "none" if spec.crop is None else "rows {}:{}, cols {}:{}".format(*spec.crop)
        lines = [
            f"dataset : {spec.root} ({spec.format}, list {spec.list_path.name}, "
            f"depth_scale {spec.depth_scale:g}, crop {crop})",
            f"items   : {len(self.items)} listed, {len(good)} ok, {len(bad)} bad",
        ]
        sizes = Counter(r.shape for r in self.items if r.shape is not None)
        if sizes:
            lines.append("sizes   : " + ", ".join(f"{h}x{w}: {n}" for (h, w), n in sizes.most_common()))
        with_depth = [r for r in good if np.isfinite(r.depth_min)]
        if with_depth:
            lo, hi = min(r.depth_min for r in with_depth), max(r.depth_max for r in with_depth)
            lines.append(f"depth   : {lo:.3f} .. {hi:.3f} m over valid pixels")
            if hi > MAX_PLAUSIBLE_DEPTH:
                lines.append(f"          depth up to {hi:.0f} m: is --depth-scale right? ({SCALE_HINT})")
            shares = np.array([r.valid_share for r in with_depth])
            worst = with_depth[int(shares.argmin())]
            lines.append(f"valid   : {shares.mean():.1%} of pixels on average, least {shares.min():.1%} ({worst.name})")
        if bad:
            lines.append(f"bad items ({len(bad)}):")
            lines += [f"  {r.name}: {'; '.join(r.problems)}" for r in bad]
        return "\n".join(lines)


def _inspect_rgb_only(item: Item, spec: DatasetSpec) -> ItemReport:
    """A test-list item: only the image has to be readable."""
    try:
        rgb = load_rgb(item, spec)
    except DataError as e:
        return ItemReport(item.name, (str(e),))
    return ItemReport(item.name, (), rgb.shape[:2])


def check_dataset(spec: DatasetSpec, *, test: bool = False, workers: int | None = None,
                  progress: bool | None = None) -> DatasetReport:
    """Read every item of ``spec`` and report its problems.

    Args:
        spec: the dataset.
        test: a test list: depth files may be absent and only images are read.
        workers: reading threads (decoding releases the GIL); default up to 8, one per core.
        progress: a tqdm bar on stderr; ``None`` shows it only on a terminal.

    Raises:
        DataError: the list file itself is unusable (the per-item problems are in the report).
    """
    items = index_dataset(spec, require_depth=not test, check_files=False)
    inspect = _inspect_rgb_only if test else inspect_item
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        reports = list(tqdm(pool.map(lambda it: inspect(it, spec), items), total=len(items), desc="checking",
                            unit="item", disable=None if progress is None else not progress,
                            file=sys.stderr))
    return DatasetReport(spec, reports)
