"""The leakage report of a split and the figure of its largest clusters.

The report answers "how close does validation come to training?": cluster statistics, how many
clusters straddle the two sides, and the most similar (validation, training) pairs, found by a
blockwise search over validation rows so the full similarity matrix never exists in memory.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import torch

from grid.split.graph import cross_split_pairs
from trainables.data import DatasetSpec, Item, load_rgb
from trainables.io import atomic_write


def leakage_report(
    names: list[str], labels: np.ndarray, is_val: np.ndarray, vectors: np.ndarray, *,
    threshold: float, k: int = 10, device: torch.device | None = None,
) -> dict:
    """Cluster statistics and the nearest cross-split pairs of one split (JSON-ready)."""
    n = len(names)
    sizes = collections.Counter(labels.tolist())
    multi = sum(c for c in sizes.values() if c > 1)
    sides = collections.defaultdict(set)
    for lab, v in zip(labels.tolist(), is_val.tolist(), strict=True):
        sides[lab].add(v)
    straddle = [lab for lab, s in sides.items() if len(s) == 2]
    pairs, above = cross_split_pairs(vectors, is_val, threshold=threshold, k=k, device=device)
    return {
        "images": n,
        "train": int((~is_val).sum()),
        "val": int(is_val.sum()),
        "val_share": round(float(is_val.mean()), 4),
        "clusters": len(sizes),
        "largest_cluster": max(sizes.values()),
        "multi_image_clusters": sum(1 for c in sizes.values() if c > 1),
        "multi_image_share": round(multi / n, 4),
        "straddling_clusters": len(straddle),
        "straddling_images": sum(sizes[lab] for lab in straddle),
        "cross_pairs_above_threshold": above,
        "max_cross_similarity": round(pairs[0][2], 4) if pairs else None,
        "nearest_cross_pairs": [
            {"val": names[i], "train": names[j], "similarity": round(s, 4)} for i, j, s in pairs],
    }


def format_report(report: dict, params: dict) -> str:
    """Human-readable lines of a leakage report."""
    lines = [
        f"split method {params['method']} (threshold {params['threshold']}, sequence threshold "
        f"{params['sequence_threshold']}, val fraction {params['val_fraction']}, seed {params['seed']})",
        f"  images {report['images']}: train {report['train']}, val {report['val']} "
        f"(share {report['val_share']:.3f})",
        f"  clusters {report['clusters']}, largest {report['largest_cluster']}, "
        f"multi-image clusters {report['multi_image_clusters']} holding "
        f"{100 * report['multi_image_share']:.1f}% of the images",
        f"  clusters straddling train/val: {report['straddling_clusters']} "
        f"({report['straddling_images']} images)",
        f"  cross-split pairs with similarity >= {params['threshold']}: "
        f"{report['cross_pairs_above_threshold']}",
        f"  highest cross-split similarity: {report['max_cross_similarity']}",
        "  nearest cross-split pairs (val <-> train):",
    ]
    lines += [f"    {p['similarity']:.4f}  {p['val']}  <->  {p['train']}"
              for p in report["nearest_cross_pairs"]]
    links = report.get("sequence_links")
    if links:
        orders = ", ".join(f"{k} order lift {v['lift']} ({'used' if v['used'] else 'not used'})"
                           for k, v in links.items() if isinstance(v, dict))
        lines.append(f"  sequence links: {links['links']} ({orders})")
    lines += [f"  warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def cluster_figure(
    path: Path, items: list[Item], spec: DatasetSpec, cluster_of: dict[str, int],
    val: set[str], *, clusters: int = 6, per_cluster: int = 8, thumb: int = 160,
) -> Path:
    """PNG of the largest clusters, one row each, images side by side (like the paper's Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the driver or in CI
    import matplotlib.pyplot as plt

    members = collections.defaultdict(list)
    for it in items:
        members[cluster_of[it.name]].append(it)
    rows = sorted(members, key=lambda c: (-len(members[c]), c))[:clusters]
    cols = min(per_cluster, max(len(members[c]) for c in rows))
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * thumb / 80, len(rows) * thumb * 0.8 / 80),
                             squeeze=False)
    for r, cid in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(members[cid]):
                it = members[cid][c]
                ax.imshow(load_rgb(it, spec))
                ax.set_title(Path(it.name).name, fontsize=6)
        side = "val" if members[cid][0].name in val else "train"
        axes[r][0].text(-0.08, 0.5, f"cluster {cid}\n{len(members[cid])} images\n({side})",
                        transform=axes[r][0].transAxes, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80)
    plt.close(fig)
    return Path(path)
