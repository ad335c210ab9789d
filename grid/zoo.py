"""The model zoo at a glance (``depth-grid models``): the registered architectures, their sizes and
weight sources."""

from __future__ import annotations

import torch

from trainables.models import MODELS, build_model


def count_parameters(name: str, size: str = "base") -> int:
    """Parameters of ``name`` at ``size``, built without weights.

    Built on the meta device (shapes only, no memory, no init cost); an architecture that cannot
    be built there is built on the CPU instead.
    """
    try:
        with torch.device("meta"):
            model = build_model(name, size=size)
    except Exception:  # a library whose init touches real values on meta tensors
        model = build_model(name, size=size)
    return sum(p.numel() for p in model.parameters())


def _human(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n / 1e3:.1f}K"


def table(size: str = "base") -> list[dict[str, str]]:
    """One row per architecture: name, params (millions), weight source, description."""
    rows = []
    for name in sorted(MODELS):
        entry = MODELS[name]
        try:
            params = _human(count_parameters(name, size))
        except Exception as e:  # list the others even if one family is broken
            params = f"error: {type(e).__name__}: {e}"[:80]
        rows.append({"name": name, "params": params, "source": entry.source,
                     "description": entry.description})
    return rows


def listing(size: str = "base") -> str:
    """The table ``depth-grid models`` prints: one architecture per two lines (name, params,
    description; then its ``pretrained=True`` weight source)."""
    rows = table(size)
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'architecture':<{width}}  {'params':>8}  description / pretrained=True source"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['params']:>8}  {r['description']}")
        lines.append(f"{'':<{width}}  {'':>8}  weights: {r['source']}")
    lines.append(f"\n{len(rows)} architectures ({size}). build_model(name, size={size!r}, pretrained=...): "
                 "False = random init, True = the source above, DIR/FILE = local weights.")
    return "\n".join(lines)
