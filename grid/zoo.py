"""The model zoo at a glance (``depth-grid models``): the registered architectures, their sizes,
weight sources and licences."""

from __future__ import annotations

import torch

from trainables.models import MODELS, build_model


def count_parameters(name: str, size: str | None = "base") -> int:
    """Parameters of ``name`` at ``size`` (``None``: the architecture's default variant), built
    without weights.

    Built on the meta device (shapes only, no memory, no init cost); an architecture that cannot
    be built there is built on the CPU instead.
    """
    kw = {} if size is None else {"size": size}
    try:
        with torch.device("meta"):
            model = build_model(name, **kw)
    except Exception:  # a library whose init touches real values on meta tensors
        model = build_model(name, **kw)
    return sum(p.numel() for p in model.parameters())


def _human(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n / 1e3:.1f}K"


def _variants(info) -> str:
    """The released variants and their parameter counts, e.g. ``size: small 24.8M, base 97.5M``."""
    if not info.params_m:
        return ""
    counts = ", ".join(f"{k} {v:g}M" for k, v in info.params_m.items())
    return f"{info.variant_key}: {counts}"


def table(size: str = "base") -> list[dict[str, str]]:
    """One row per architecture: name, params (millions, at ``size``; ``base`` counts each
    architecture's default variant), weight source, licence, released variants, description."""
    rows = []
    for name in sorted(MODELS):
        entry = MODELS[name]
        try:
            params = _human(count_parameters(name, None if size == "base" else size))
        except Exception as e:  # list the others even if one family is broken
            params = f"error: {type(e).__name__}: {e}"[:80]
        rows.append({"name": name, "params": params, "source": entry.source, "licence": entry.info.licence,
                     "variants": _variants(entry.info), "description": entry.description})
    return rows


def listing(size: str = "base") -> str:
    """The table ``depth-grid models`` prints: one architecture per two to four lines (name,
    params, description; its ``pretrained=True`` weight source; the released variants' parameter
    counts and the weights' licence, where known)."""
    rows = table(size)
    width = max(len(r["name"]) for r in rows)
    pad = f"{'':<{width}}  {'':>8}  "
    lines = [f"{'architecture':<{width}}  {'params':>8}  description / pretrained=True source"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['params']:>8}  {r['description']}")
        lines.append(f"{pad}weights: {r['source']}")
        if r["variants"]:
            lines.append(f"{pad}released: {r['variants']}")
        if r["licence"]:
            lines.append(f"{pad}licence: {r['licence']}")
    which = "default variants" if size == "base" else size
    lines.append(f"\n{len(rows)} architectures ({which}). build_model(name, size=..., pretrained=...): "
                 "False = random init, True = the source above, DIR/FILE = local weights.")
    return "\n".join(lines)
