"""Published depth numbers (docs/metrics.md, "Published reference numbers") and where a
leaderboard row falls among those of the same protocol (``depth-grid leaderboard --reference``).

Only rows scored under the protocol the papers used are placed: a number under ``none`` (no cap,
no crop) is not comparable and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Reference:
    """One published result. ``abs_rel`` is what every row has; the rest where published."""

    model: str
    protocol: str
    abs_rel: float
    rmse: float | None = None
    silog: float | None = None
    source: str = ""


_TOOLBOX = "Monocular-Depth-Estimation-Toolbox configs/{}/README.md"
REFERENCES: tuple[Reference, ...] = (
    Reference("BTS ResNet-50", "nyu", 0.114, 0.403, 11.73, _TOOLBOX.format("bts") + " and its log"),
    Reference("DPT ViT-B", "nyu", 0.135, 0.413, 10.90, _TOOLBOX.format("dpt") + " and its log"),
    Reference("DepthFormer Swin-T", "nyu", 0.120, 0.402, 11.94, _TOOLBOX.format("depthformer") + " and its log"),
    Reference("NeWCRFs Swin-L", "nyu", 0.095, source="NeWCRFs (CVPR 2022)"),
    Reference("ZoeDepth", "nyu", 0.077, source="Depth Anything metric_depth/README.md"),
    Reference("Depth Anything V1 (metric)", "nyu", 0.056, source="Depth Anything metric_depth/README.md"),
    Reference("BTS ResNet-50", "kitti_garg", 0.059, 2.50, source=_TOOLBOX.format("bts")),
    Reference("DPT ViT-B", "kitti_garg", 0.073, 2.604, source=_TOOLBOX.format("dpt")),
)


def place(abs_rel: float | None, protocol: str | None) -> str:
    """Where ``abs_rel`` (lower is better) falls among the published numbers of ``protocol``."""
    protocol = protocol if isinstance(protocol, str) else "none"
    refs = sorted((r for r in REFERENCES if r.protocol == protocol), key=lambda r: r.abs_rel)
    if not refs:
        valid = sorted({r.protocol for r in REFERENCES})
        return f"no published numbers under protocol {protocol} (they are under {', '.join(valid)})"
    if abs_rel is None or not math.isfinite(abs_rel):
        return ""
    better = [r for r in refs if r.abs_rel < abs_rel]
    worse = [r for r in refs if r.abs_rel >= abs_rel]
    show = lambda r: f"{r.model} {r.abs_rel:.3f}"  # noqa: E731
    rank = f"{len(better) + 1} of {len(refs) + 1}"
    if not better:
        return f"{rank}: below every one (best published: {show(worse[0])})"
    if not worse:
        return f"{rank}: above every one (worst published: {show(better[-1])})"
    return f"{rank}: between {show(better[-1])} and {show(worse[0])}"


def reference_table(df: pd.DataFrame) -> str:
    """A markdown table: each trial's ``abs_rel`` under its protocol, placed among the published ones."""
    lines = ["| trial_id | arch | protocol | abs_rel | against published abs_rel (same protocol) |",
             "|---|---|---|---|---|"]
    for row in df.itertuples():
        protocol = getattr(row, "protocol", "none")
        protocol = protocol if isinstance(protocol, str) else "none"
        value = row.abs_rel if isinstance(row.abs_rel, (int, float)) and row.abs_rel == row.abs_rel else None
        shown = f"{value:.4f}" if value is not None else ""
        lines.append(f"| {row.trial_id} | {row.arch} | {protocol} | {shown} | {place(value, protocol)} |")
    return "\n".join(lines)
