"""What an experiment costs: each trial's GPU-hours priced by the accelerator it ran on.

A trial that held no GPU costs nothing here (the price table is per GPU-hour). One that ran on
a CUDA device is priced by the table entry its device name matches (``grid/experiment/prices.py``); one
that held a GPU but saw no CUDA device (a logical GPU) at the table's ``default``; an unknown
GPU, or a trial that recorded no device, is priced as unknown (NaN), never as zero.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from grid.experiment.plan import ExperimentError
from grid.experiment.prices import DATE, DEFAULT, PRICES


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
            f"(indicative Spot prices per GPU-hour: grid/experiment/prices.py of {DATE}, or --prices)")
    if (~known).any():
        names = ", ".join(sorted({str(a).removeprefix("unknown (").removesuffix(")") for a in df.accelerator[~known]}))
        text += (f"; {df.gpu_hours[~known].sum():.4f} GPU-hours on unpriced accelerators not counted "
                 f"({names}): add them to a --prices table")
    return text
