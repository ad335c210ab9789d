"""``depth-grid run --dry-run``: the trials a run would start and the data, split and cost it
would have, from the plan alone. Generates, computes and starts nothing (no Ray, no split, no
scenes).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from grid.experiment.config import RunConfig
from grid.experiment.cost import money, read_prices
from grid.experiment.leaderboard import experiment_trials, trial_results
from grid.experiment.plan import concrete_configs, describe, trial_count
from grid.experiment.prices import DEFAULT
from grid.experiment.spaces import Plan
from search_spaces.profiles import CPU_DEFAULT, SYNTHETIC

COLUMNS = ("arch", "lam", "lr", "weight_decay", "epochs", "batch_size", "accum_steps", "image_size", "pretrained")


def dry_run(cfg: RunConfig, space_mod: ModuleType, plan: Plan) -> str:
    """The report ``--dry-run`` prints: trials, resources, data and split, eval sets, cost."""
    gpus = (f"{cfg.gpus_per_trial:g}" if cfg.gpus_per_trial is not None
            else "1 if the cluster has or its autoscaler can add GPUs, else 0 (decided at start)")
    search = space_mod.SEARCH
    out = [_trial_table(name, param_space, search) for name, param_space in plan]
    cpus = (f"{cfg.cpus_per_trial:g}" if cfg.cpus_per_trial is not None
            else "1 on CPU, else the GPU nodes' CPUs per GPU (decided at start)")
    out.append(f"resources per trial: CPUs: {cpus}, GPUs: {gpus}")
    if (cfg.gpus_per_trial or 0) > 1:  # data-parallel trials (trainables.distributed)
        out.append(f"data-parallel: {cfg.gpus_per_trial:g} processes per trial, one per GPU; effective batch "
                   f"batch_size x accum_steps unchanged, each process runs accum_steps / {cfg.gpus_per_trial:g} "
                   "micro-batches per optimiser step; lr unchanged")
    if cfg.gpus_per_trial != 0:
        out.append(f"accelerator: {cfg.accelerator or 'the cheapest type the cluster has or can add'}"
                   f"{'' if cfg.accelerator else ' (decided at start; --accelerator TYPE|any)'}")
    out.append(data_summary(cfg))
    if cfg.eval_data:
        from grid.experiment.eval_data import describe as describe_sets
        from grid.experiment.eval_data import resolve_eval_sets

        sets = resolve_eval_sets(list(cfg.eval_data), cfg.cache_root)  # read and checked as a run would
        out.append(describe_sets(sets))
    out.append(cost_estimate(cfg, plan, search))
    out.append(f"total: {trial_count(plan, search)} trial(s); nothing was started (--dry-run)")
    return "\n\n".join(out)


def _trial_table(name: str, param_space: dict, search: dict) -> str:
    configs = concrete_configs(param_space, bounds=False)
    # the usual columns, then any other setting that differs between trials (e.g. a recipe's)
    varying = [k for k in configs[0] if k not in COLUMNS
               and len({describe(c.get(k, "")) for c in configs}) > 1] if configs else []
    cols = [*COLUMNS, *varying]
    rows = [[describe(c.get(col, "")) for col in cols] for c in configs]
    samples = search["num_samples"]
    each = f", {samples} sample(s) each ({search['algorithm']})" if samples > 1 else ""
    return f"experiment {name}: {len(configs) * samples} trial(s){each}\n" + _table(rows, cols)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True))
    return "\n".join([line, *("  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)) for r in rows)])


def data_summary(cfg: RunConfig) -> str:
    """What the run would train on, and its split when it is already in the cache."""
    if cfg.data is None:
        return (f"data: built-in synthetic scenes ({SYNTHETIC['scenes']} scenes x {SYNTHETIC['views']} views "
                f"at {SYNTHETIC['size'][0]}x{SYNTHETIC['size'][1]}), generated under {cfg.results}/synth on a "
                f"real run; CPU profile {CPU_DEFAULT}")
    from grid.experiment.prepare import (  # the spec a real run reads
        resolve_data,
        spec_summary,
        split_cache,
    )
    from grid.split.compute import cached_split
    from trainables.data import index_dataset

    spec, _ = resolve_data(cfg.data, cfg.results.expanduser().resolve(), cache_dir=cfg.cache_root,
                           **cfg.data_settings())
    items = index_dataset(spec)
    text = f"data: {spec_summary(spec, len(items))}"
    split = cached_split(spec, items, cache_dir=split_cache(spec, cfg.results.expanduser().resolve(), cfg.cache_dir),
                         method=cfg.split, threshold=cfg.split_threshold, val_fraction=cfg.val_fraction,
                         seed=cfg.seed)
    if split is None:
        return text + f"\nsplit: {cfg.split} (threshold {cfg.split_threshold:g}), not cached: computed on a real run"
    return text + f"\nsplit: {cfg.split}, cached: {len(split.train)} train / {len(split.val)} val images"


def _measured_epoch_seconds(cfg: RunConfig) -> dict[str, float]:
    """Mean seconds per epoch of each architecture in an earlier run under the same name."""
    record = Path(cfg.results).expanduser() / cfg.experiment_name / "experiment.json"
    if not record.is_file():
        return {}
    times: dict[str, list[float]] = {}
    for store, trials in experiment_trials(json.loads(record.read_text())):
        for trial in trials:
            arch = json.loads(store.read_text(f"{trial}/params.json")).get("arch", "")
            times.setdefault(arch, []).extend(float(r["time_this_iter_s"]) for r in trial_results(store, trial)
                                              if "epoch" in r and "time_this_iter_s" in r)
    return {a: sum(t) / len(t) for a, t in times.items() if t}


def cost_estimate(cfg: RunConfig, plan: list, search: dict) -> str:
    """``--dry-run``'s cost line: the plan's trial-epochs x seconds per epoch (``--epoch-seconds``,
    else measured by an earlier run of the experiment) x GPUs per trial, priced per accelerator."""
    measured = {} if cfg.epoch_seconds else _measured_epoch_seconds(cfg)
    gpus = 1.0 if cfg.gpus_per_trial is None else cfg.gpus_per_trial
    seconds, missing = 0.0, set()
    for _, space in plan:
        for config in concrete_configs(space, bounds=False):
            arch, epochs = str(config.get("arch")), config.get("epochs", 4)
            per_epoch = cfg.epoch_seconds or measured.get(arch)
            if per_epoch is None or not isinstance(epochs, (int, float)):
                missing.add(arch)
                continue
            seconds += per_epoch * epochs * search["num_samples"]
    if missing:
        return (f"cost: unknown, no time per epoch for {', '.join(sorted(missing))}: pass --epoch-seconds S "
                "(or run once: a later --dry-run uses the measured time)")
    if not gpus:
        return "cost: $0 (--gpus-per-trial 0: no trial holds a GPU)"
    hours = seconds * gpus / 3600
    prices = read_prices(cfg.prices)
    source = f"{cfg.epoch_seconds:g} s per epoch (given)" if cfg.epoch_seconds else \
        "the seconds per epoch measured by the earlier run of this experiment"
    each = ", ".join(f"{money(hours * p)} on {k} (${p:g}/h)" for k, p in prices.items() if k != DEFAULT)
    return (f"cost estimate: {hours:.2f} GPU-hours ({source}, {gpus:g} GPU per trial"
            f"{'' if cfg.gpus_per_trial is not None else ', assumed'}): {each}")
