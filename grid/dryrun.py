"""``depth-grid run --dry-run``: the trials a run would start and the data and split it would
use, from the plan alone. Generates, computes and starts nothing (no Ray, no split, no scenes).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import search_spaces
from grid.plan import concrete_configs, describe, trial_count
from search_spaces.profiles import CPU_DEFAULT, SYNTHETIC

COLUMNS = ("arch", "lam", "lr", "weight_decay", "epochs", "batch_size", "accum_steps", "image_size", "pretrained")


def spaces_table() -> str:
    """Each space with its description and trial count, for ``--help``."""
    import argparse as _argparse

    from grid.run import studies  # the same plan grid.run makes

    rows = []
    for info in pkgutil.iter_modules(search_spaces.__path__):
        if info.name == "profiles":
            continue
        mod = importlib.import_module(f"search_spaces.{info.name}")
        args = _argparse.Namespace(name=None, space=info.name, epochs=None, image_size=None, set=[], arch=None)
        count = trial_count(studies(mod, args, synthetic=False), mod.SEARCH)
        rows.append(f"  {info.name:<13} {count:>3} trials  {mod.DESCRIPTION}")
    return "\n".join(rows)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True))
    return "\n".join([line, *("  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)) for r in rows)])


def data_summary(args: argparse.Namespace) -> str:
    """What the run would train on, and its split when it is already in the cache."""
    if args.data is None:
        return (f"data: built-in synthetic scenes ({SYNTHETIC['scenes']} scenes x {SYNTHETIC['views']} views "
                f"at {SYNTHETIC['size'][0]}x{SYNTHETIC['size'][1]}), generated under {args.results}/synth on a "
                f"real run; CPU profile {CPU_DEFAULT}")
    from grid.experiment import (
        resolve_data,  # the spec a real run reads (given --data: no generation)
        spec_summary,
    )
    from trainables.data import index_dataset

    spec, _ = resolve_data(args.data, Path(args.results), format=args.format, list_file=args.list_file,
                           depth_scale=args.depth_scale, crop=args.crop)
    items = index_dataset(spec)
    text = f"data: {spec_summary(spec, len(items))}"
    from grid.split import cached_split

    split = cached_split(spec, items, cache_dir=Path(args.results).expanduser().resolve() / "splits",
                         method=args.split, threshold=args.split_threshold, val_fraction=args.val_fraction,
                         seed=args.seed)
    if split is None:
        return text + f"\nsplit: {args.split} (threshold {args.split_threshold:g}), not cached: computed on a real run"
    return text + f"\nsplit: {args.split}, cached: {len(split.train)} train / {len(split.val)} val images"


def dry_run(args: argparse.Namespace, plan: list[tuple[str, dict[str, Any]]], search: dict[str, Any]) -> str:
    """The report ``--dry-run`` prints."""
    gpus = (f"{args.gpus_per_trial:g}" if args.gpus_per_trial is not None
            else "1 if the cluster has or its autoscaler can add GPUs, else 0 (decided at start)")
    out = []
    for name, param_space in plan:
        configs = concrete_configs(param_space, bounds=False)
        # the usual columns, then any other setting that differs between trials (e.g. a recipe's)
        varying = [k for k in configs[0] if k not in COLUMNS
                   and len({describe(c.get(k, "")) for c in configs}) > 1] if configs else []
        cols = [*COLUMNS, *varying]
        rows = [[describe(c.get(col, "")) for col in cols] for c in configs]
        samples = search["num_samples"]
        each = f", {samples} sample(s) each ({search['algorithm']})" if samples > 1 else ""
        out.append(f"experiment {name}: {len(configs) * samples} trial(s){each}\n"
                   + _table(rows, cols))
    out.append(f"resources per trial: {args.cpus_per_trial:g} CPU, GPUs: {gpus}")
    out.append(data_summary(args))
    if getattr(args, "eval_data", None):
        from grid.eval_sets import describe as describe_sets
        from grid.eval_sets import resolve_eval_sets

        out.append(describe_sets(resolve_eval_sets(args.eval_data)))  # read and checked as a run would
    from grid.cost import dry_run_estimate

    out.append(dry_run_estimate(args, plan, search))
    out.append(f"total: {trial_count(plan, search)} trial(s); nothing was started (--dry-run)")
    return "\n\n".join(out)
