"""What an experiment costs: each trial's GPU-hours priced by the accelerator it ran on.

A trial that held no GPU costs nothing here (the price table is per GPU-hour). One that ran on
a CUDA device is priced by the table entry its device name matches (``grid/prices.py``); one
that held a GPU but saw no CUDA device (a logical GPU) at the table's ``default``; an unknown
GPU, or a trial that recorded no device, is priced as unknown (NaN), never as zero.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from grid.plan import ExperimentError
from grid.prices import DATE, DEFAULT, PRICES


def read_prices(path: str | Path | None = None) -> dict[str, float]:
    """The built-in table, or the user's (JSON or TOML, ``{"T4": 0.14, ...}``), checked."""
    if path is None:
        return dict(PRICES)
    path = Path(path).expanduser()
    try:
        text = path.read_text()
        table = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except OSError as e:
        raise ExperimentError(f"{path}: cannot read the price table ({e.strerror or e})") from e
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ExperimentError(f"{path}: not a JSON or TOML price table ({e})") from e
    bad = [k for k, v in table.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0] \
        if isinstance(table, dict) else ["(not a table)"]
    if bad or not table:
        raise ExperimentError(f"{path}: a price table maps accelerator names to $ per GPU-hour >= 0, "
                              f'e.g. {{"T4": 0.14, "default": 0.14}}; bad entries: {bad or "(empty)"}')
    return {str(k): float(v) for k, v in table.items()}


def match_accelerator(device_name: str, prices: dict[str, float]) -> str | None:
    """The table key named in ``device_name`` ("cuda:0 (Tesla T4)" -> "T4"), longest first."""
    name = device_name.partition("(")[2].rstrip(")") or device_name
    for key in sorted((k for k in prices if k != DEFAULT), key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, re.I):
            return key
    return None


def price_trial(gpu_hours: float, device_name: str | None, prices: dict[str, float]) -> tuple[str, float]:
    """``(accelerator it is priced as, cost in $)``; the cost is NaN when unknown."""
    if not gpu_hours:
        return "cpu", 0.0
    if not device_name:
        return "unknown (not recorded)", math.nan
    if device_name.startswith("cuda"):
        key = match_accelerator(device_name, prices)
        if key is None:
            return f"unknown ({device_name.partition('(')[2].rstrip(')') or device_name})", math.nan
        return key, gpu_hours * prices[key]
    if DEFAULT in prices:  # held a GPU, ran on the CPU: the reservation is what is billed
        return f"{DEFAULT} (no CUDA device seen)", gpu_hours * prices[DEFAULT]
    return "unknown (no CUDA device seen, no default price)", math.nan


def experiment_prices(info: dict[str, Any], override: str | Path | None = None) -> dict[str, float]:
    """``--prices`` given now, else the table the experiment was run with, else the built-in one."""
    if override is not None:
        return read_prices(override)
    return dict(info.get("prices") or PRICES)


def money(value: float) -> str:
    """Dollars with cents; four decimals, or two significant digits, for what small runs cost."""
    if abs(value) >= 0.1 or value == 0:
        return f"${value:.2f}"
    return f"${value:.4f}" if abs(value) >= 1e-3 else f"${value:.2g}"


def cost_line(df) -> str:
    """The experiment's total, e.g. ``Estimated cost: $0.0021 for 0.0150 GPU-hours (...)``."""
    hours = float(df.gpu_hours.fillna(0).sum()) if len(df) else 0.0
    if not hours:
        return "Estimated cost: $0 (no trial held a GPU)"
    known = df.cost_usd.notna()
    text = (f"Estimated cost: {money(df.cost_usd[known].sum())} for {df.gpu_hours[known].sum():.4f} GPU-hours "
            f"(indicative Spot prices per GPU-hour: grid/prices.py of {DATE}, or --prices)")
    if (~known).any():
        names = ", ".join(sorted({str(a).removeprefix("unknown (").removesuffix(")") for a in df.accelerator[~known]}))
        text += (f"; {df.gpu_hours[~known].sum():.4f} GPU-hours on unpriced accelerators not counted "
                 f"({names}): add them to a --prices table")
    return text


def _measured_epoch_seconds(args: argparse.Namespace) -> dict[str, float]:
    """Mean seconds per epoch of each architecture in an earlier run under the same name."""
    from grid.leaderboard import experiment_trials, trial_results

    record = Path(args.results).expanduser() / (args.name or Path(args.space).stem) / "experiment.json"
    if not record.is_file():
        return {}
    times: dict[str, list[float]] = {}
    for store, trials in experiment_trials(json.loads(record.read_text())):
        for trial in trials:
            arch = json.loads(store.read_text(f"{trial}/params.json")).get("arch", "")
            times.setdefault(arch, []).extend(float(r["time_this_iter_s"]) for r in trial_results(store, trial)
                                              if "epoch" in r and "time_this_iter_s" in r)
    return {a: sum(t) / len(t) for a, t in times.items() if t}


def dry_run_estimate(args: argparse.Namespace, plan: list, search: dict) -> str:
    """``--dry-run``'s cost line: the plan's trial-epochs x seconds per epoch (``--epoch-seconds``,
    else measured by an earlier run of the experiment) x GPUs per trial, priced per accelerator."""
    from grid.plan import concrete_configs

    measured = {} if args.epoch_seconds else _measured_epoch_seconds(args)
    gpus = 1.0 if args.gpus_per_trial is None else args.gpus_per_trial
    seconds, missing = 0.0, set()
    for _, space in plan:
        for config in concrete_configs(space, bounds=False):
            arch, epochs = str(config.get("arch")), config.get("epochs", 4)
            per_epoch = args.epoch_seconds or measured.get(arch)
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
    prices = read_prices(args.prices)
    source = f"{args.epoch_seconds:g} s per epoch (given)" if args.epoch_seconds else \
        "the seconds per epoch measured by the earlier run of this experiment"
    each = ", ".join(f"{money(hours * p)} on {k} (${p:g}/h)" for k, p in prices.items() if k != DEFAULT)
    return (f"cost estimate: {hours:.2f} GPU-hours ({source}, {gpus:g} GPU per trial"
            f"{'' if args.gpus_per_trial is not None else ', assumed'}): {each}")
