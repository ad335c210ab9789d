"""The driver's configuration: one frozen, typed ``RunConfig`` per ``depth-grid run``.

Built by the command line (``grid.cli.run``) and by ``run_grid(space, data, **kw)`` alike, and
checked at the door as ``TrialConfig`` is: an unknown keyword is a ``TypeError`` (the dataclass's
own), a value out of range a ``ConfigError`` naming the setting. No Ray, torch or data here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grid.experiment.eval_data import EvalData, check_unique, parse_eval_data
from grid.experiment.plan import SPLIT_METHODS
from grid.sizes import parse_size
from trainables.config import ConfigError

FORMATS = ("cil", "pairs", "kitti")
CROPS = ("eigen", "none")
VERBOSITY = (0, 1, 2, 3)
LOGGERS = ("tensorboard", "mlflow", "wandb")  # --log-to (grid.experiment.tracking)


def parse_setting(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE``: the value as JSON when it parses, else the plain string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


@dataclass(frozen=True)
class RunConfig:
    """Everything one run of the grid needs; field names are the ``depth-grid run`` options.

    ``data=None`` trains on the built-in synthetic scenes with the CPU profile. ``set`` overrides
    trial settings for every trial; ``eval_data`` holds ``NAME=DIR[:KEY=VALUE,...]`` strings or
    parsed ``EvalData``; ``image_size`` takes ``(h, w)`` or ``"426x560"``. ``command`` is the
    command line that made it (provenance), empty from Python.
    """

    space: str = "all_models"
    data: Path | None = None
    plugins: tuple[str, ...] = ()
    arch: tuple[str, ...] = ()
    format: str | None = None
    list_file: str | None = None
    depth_scale: float | None = None
    crop: str | None = None
    protocol: str | None = None  # validation's evaluation protocol: the trial setting of that name
    align: str | None = None  # validation's alignment of relative depth: the trial setting of that name
    eval_data: tuple[EvalData, ...] = ()
    prices: Path | None = None
    epoch_seconds: float | None = None
    results: Path = Path("results")
    storage: str | None = None
    cache_dir: Path | None = None  # node-local cache: packed shards, split, embeddings (default <results>/splits)
    name: str | None = None
    epochs: int | None = None
    image_size: tuple[int, int] | None = None
    set: dict[str, Any] = field(default_factory=dict)
    gpus_per_trial: float | None = None
    accelerator: str | None = None  # a GPU type (T4, P100...), "any"; None: the cheapest the cluster offers
    cpus_per_trial: float | None = None  # None: 1 on CPU, else the GPU nodes' CPUs per GPU
    max_concurrent: int | None = None
    max_failures: int = 2
    retry_errored: bool = False
    address: str | None = None
    seed: int = 0
    seeds: int | tuple[int, ...] = 1  # K seeds from --seed on, or the seeds themselves
    split: str = "sequence"
    split_threshold: float = 0.9
    val_fraction: float = 0.2
    verbose: int = 1
    log_to: tuple[str, ...] = ("tensorboard",)
    tracking_uri: str | None = None
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        fix("data", None if self.data is None else self.data if "://" in str(self.data) else Path(self.data))
        fix("cache_dir", None if self.cache_dir is None else Path(self.cache_dir))
        fix("results", Path(self.results))
        fix("prices", None if self.prices is None else Path(self.prices))
        fix("plugins", _strings("plugins", self.plugins))
        fix("arch", _strings("arch", self.arch))
        fix("command", tuple(str(c) for c in self.command))
        fix("seeds", _seeds(self.seeds))
        loggers = tuple(n.strip() for s in _strings("log_to", self.log_to) for n in s.split(",") if n.strip())
        fix("log_to", loggers or ("tensorboard",))  # TensorBoard: the default, always written
        if isinstance(self.image_size, str):
            fix("image_size", _size(self.image_size))
        elif self.image_size is not None:
            fix("image_size", _size("x".join(str(v) for v in self.image_size)))
        if not isinstance(self.set, dict):  # --set KEY=VALUE pairs
            fix("set", dict(parse_setting(s) if isinstance(s, str) else tuple(s) for s in self.set))
        sets = tuple(parse_eval_data(e) if isinstance(e, str) else e for e in _items(self.eval_data))
        check_unique(list(sets))
        fix("eval_data", sets)
        fix("set", _with_scoring(self))
        self._check()

    def _check(self) -> None:
        checks = [  # (ok, rule): each names its option as the command line spells it
            (self.format in (None, *FORMATS), f"--format must be one of {', '.join(FORMATS)}"),
            (self.crop in (None, *CROPS), f"--crop must be one of {', '.join(CROPS)}"),
            (self.split in SPLIT_METHODS, f"--split must be one of {', '.join(SPLIT_METHODS)}"),
            (self.verbose in VERBOSITY, "--verbose must be 0, 1, 2 or 3"),
            (_positive(self.depth_scale), "--depth-scale: must be > 0"),
            (_positive(self.epoch_seconds), "--epoch-seconds: must be > 0"),
            (_positive(self.epochs), "--epochs: must be > 0"),
            (_positive(self.max_concurrent), "--max-concurrent: must be > 0"),
            (self.cpus_per_trial is None or _positive(self.cpus_per_trial), "--cpus-per-trial: must be > 0"),
            (self.gpus_per_trial is None or self.gpus_per_trial >= 0, "--gpus-per-trial must be >= 0"),
            (self.gpus_per_trial is None or self.gpus_per_trial <= 1 or float(self.gpus_per_trial).is_integer(),
             "--gpus-per-trial above 1 must be a whole number: one data-parallel process per GPU"),
            (self.accelerator is None or self.accelerator.replace("-", "").replace("_", "").isalnum(),
             "--accelerator must be a GPU type such as T4 or P100, or any"),
            (self.max_failures >= -1, "--max-failures must be >= -1 (-1: retry forever)"),
            (0 < self.val_fraction < 1, "--val-fraction must be between 0 and 1"),
            (0 < self.split_threshold <= 1, "--split-threshold must be in (0, 1]"),
            (set(self.log_to) <= set(LOGGERS), f"--log-to must be one of {', '.join(LOGGERS)}, got {','.join(self.log_to)}"),
            (not (self.trial_seeds and "seed" in self.set), "--seeds and --set seed=... both set the trial seed: use one"),
        ]
        for ok, rule in checks:
            if not ok:
                raise ConfigError(rule)
        for name, kind in (("epochs", int), ("max_concurrent", int), ("max_failures", int), ("seed", int),
                           ("verbose", int)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer, got {value!r}")

    @property
    def experiment_name(self) -> str:
        """``--name``, else the space's name (a space file's stem)."""
        return self.name or Path(self.space).stem

    @property
    def trial_seeds(self) -> tuple[int, ...]:
        """The trial seeds ``--seeds`` asks for: ``K`` seeds from ``--seed`` on, or the listed ones;
        empty for ``--seeds 1`` (the space's own seed)."""
        if isinstance(self.seeds, tuple):
            return self.seeds
        return tuple(range(self.seed, self.seed + self.seeds)) if self.seeds > 1 else ()

    @property
    def cache_root(self) -> Path:
        """``--cache-dir``, else ``<results>/splits``: packed shards under ``packs/``, beside the
        split cache and its embeddings."""
        return (self.cache_dir or self.results / "splits").expanduser().resolve()

    @property
    def synthetic(self) -> bool:
        """No ``--data``: the built-in scenes and the CPU profile."""
        return self.data is None

    def data_settings(self) -> dict[str, Any]:
        """``--format``, ``--list``, ``--depth-scale``, ``--crop`` as ``DatasetSpec.detect``'s keywords."""
        return {"format": self.format, "list_file": self.list_file, "depth_scale": self.depth_scale, "crop": self.crop}

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def _with_scoring(cfg: RunConfig) -> dict[str, Any]:
    """``set`` with ``--protocol`` and ``--align`` as the trial settings of those names (only when
    given, so that experiments recorded before they existed still resume)."""
    from trainables.data import parse_crop
    from trainables.protocols import ALIGNMENTS, PROTOCOLS, get_protocol

    out = dict(cfg.set)
    for option, value, valid in (("protocol", cfg.protocol, PROTOCOLS), ("align", cfg.align, ALIGNMENTS)):
        if value is None:
            continue
        if value not in valid:
            raise ConfigError(f"--{option}: unknown value {value!r}; valid: {', '.join(valid)}")
        if out.get(option, value) != value:
            raise ConfigError(f"--{option} {value} and --set {option}={out[option]} disagree: use one")
        out[option] = value
    if cfg.crop in ("eigen", "none") and isinstance(out.get("protocol"), str) and out["protocol"] in PROTOCOLS:
        get_protocol(out["protocol"]).cropped_already(parse_crop(cfg.crop))  # e.g. kitti_garg on eigen-cropped data
    return out


def _items(value: Any) -> tuple:
    if value is None:
        return ()
    return (value,) if isinstance(value, (str, EvalData)) else tuple(value)


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    values = (value,) if isinstance(value, (str, Path)) else tuple(value)
    return tuple(str(v) for v in values)


def _seeds(value: Any) -> int | tuple[int, ...]:
    """``--seeds``: a count K >= 1 (``3``) or the seeds themselves (``0,7,42``, or a list)."""
    listed = isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value)
    parts = [str(v).strip() for v in (value if isinstance(value, (list, tuple)) else str(value).split(","))]
    try:
        seeds = [int(v) for v in parts if v]
    except ValueError:
        seeds = []
    if isinstance(value, bool) or not seeds or len(set(seeds)) != len(seeds) or (not listed and seeds[0] < 1):
        raise ConfigError(f"--seeds takes a count K >= 1 or distinct integer seeds like 0,7,42, got {value!r}")
    return tuple(seeds) if listed else seeds[0]


def _positive(value: float | None) -> bool:
    return value is None or (not isinstance(value, bool) and 0 < value < math.inf)  # also rejects nan


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text, minimum=8)
    except ValueError as e:
        raise ConfigError(f"--image-size: {e}") from None
