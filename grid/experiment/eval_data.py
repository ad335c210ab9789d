"""``depth-grid run --eval-data NAME=DIR[:KEY=VALUE,...]``: zero-shot evaluation sets for every trial.

``KEY`` is ``format`` (cil|pairs|kitti), ``list`` (list file inside DIR), ``depth_scale`` or ``crop``
(eigen|none), meaning what ``--format``, ``--list``, ``--depth-scale`` and ``--crop`` mean for
``--data``, e.g. ``--eval-data tum=/data/tum:format=pairs,depth_scale=5000``, or ``protocol``
(``trainables.protocols.PROTOCOLS``: the set's crop and depth cap, default none), e.g.
``--eval-data nyu=/data/nyu_test:format=pairs,depth_scale=1000,protocol=nyu``. Each set is read
and checked on the driver before Ray starts (a set that cannot be read stops the run, naming the
file) and reaches the trials with the training data; they score their best weights on it as they
end (``trainables.eval_sets``). ``DIR`` may be a pack (``depth-grid pack``: its folder, or its
``s3://`` / ``gs://`` URI), read with its recorded layout through the node-local cache
(``--cache-dir``; ``$DEPTH_GRID_CACHE_DIR`` on a node), as ``--data`` is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.config import ConfigError
from trainables.io import is_uri

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a column suffix: no '@', ',', ':' or spaces
KEYS = ("format", "list", "depth_scale", "crop", "protocol")
DEFAULT_CACHE = Path("results/splits")  # a pack's cache root when the caller names none (RunConfig.cache_root)


@dataclass(frozen=True)
class EvalData:
    """One parsed ``--eval-data`` argument (not yet read)."""

    name: str
    root: Path | str  # a folder, or a pack's URI (kept as text: a Path would fold its '//')
    options: tuple[tuple[str, Any], ...] = ()

    def spec_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``DatasetSpec.detect``, as ``grid.experiment.prepare.resolve_data`` takes them."""
        names = {"format": "format", "list": "list_file", "depth_scale": "depth_scale", "crop": "crop"}
        return {names[k]: v for k, v in self.options if k in names}

    def dataset_spec(self, cache_dir: str | Path | None = None, *, images_only: bool = False) -> Any:
        """The set's ``DatasetSpec``: a pack through its node-local cache (``cache_dir``, default
        ``results/splits``: the driver's ``--cache-dir``; a test pack only with ``images_only``,
        as ``split --against`` reads it), else the folder, detected."""
        from trainables.packed import dataset_spec

        return dataset_spec(self.root, cache_dir or DEFAULT_CACHE, images_only=images_only, **self.spec_kwargs())

    @property
    def protocol(self) -> str:
        """The set's evaluation protocol (``none`` unless given)."""
        return dict(self.options).get("protocol", "none")


def _option(name: str, key: str, value: str) -> Any:
    if key == "format" and value not in ("cil", "pairs", "kitti"):
        raise ConfigError(f"--eval-data {name}: format must be cil, pairs or kitti, got {value!r}")
    if key == "protocol":
        from trainables.protocols import PROTOCOLS

        if value not in PROTOCOLS:
            raise ConfigError(f"--eval-data {name}: unknown protocol {value!r}; valid: {', '.join(PROTOCOLS)}")
    if key == "crop" and value not in ("eigen", "none"):
        raise ConfigError(f"--eval-data {name}: crop must be eigen or none, got {value!r}")
    if key == "depth_scale":
        try:
            scale = float(value)
        except ValueError:
            scale = float("nan")
        if not 0 < scale < float("inf"):
            raise ConfigError(f"--eval-data {name}: depth_scale must be > 0, got {value!r}")
        return scale
    return value


def parse_eval_data(text: str) -> EvalData:
    """``NAME=DIR[:KEY=VALUE,...]`` -> ``EvalData``; argparse reports what is wrong."""
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise ConfigError(f"--eval-data takes NAME=DIR[:KEY=VALUE,...], got {text!r}")
    if not NAME.match(name):
        raise ConfigError(f"--eval-data name {name!r}: use letters, digits, '_', '-', '.'")
    root, options = rest, ()
    head, colon, tail = rest.rpartition(":")
    if colon and "=" in tail:  # DIR:format=pairs,depth_scale=5000
        root, pairs = head, [p.partition("=") for p in tail.split(",")]
        bad = [k for k, s, v in pairs if not s or k not in KEYS or not v]
        if bad:
            raise ConfigError(f"--eval-data {name}: unknown or empty option(s) {bad}; "
                                             f"keys: {', '.join(KEYS)}")
        options = tuple((k, _option(name, k, v)) for k, _, v in pairs)
    return EvalData(name, root if is_uri(root) else Path(root).expanduser(), options)


def check_unique(sets: list[EvalData]) -> None:
    names = [s.name for s in sets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        from grid.experiment.plan import ExperimentError

        raise ExperimentError(f"--eval-data: name(s) {dupes} given more than once")


def resolve_eval_sets(sets: list[EvalData], cache_dir: str | Path | None = None) -> tuple:
    """Each set's spec and items, read and checked (``DataError`` naming the set and the file);
    a packed set's shards reach ``cache_dir`` (``EvalData.dataset_spec``) when first read."""
    from trainables.data import DataError, index_dataset, load_depth
    from trainables.eval_sets import EvalSet
    from trainables.protocols import ProtocolError, get_protocol

    check_unique(sets)
    out = []
    for s in sets:
        try:
            spec = s.dataset_spec(cache_dir)
            items = tuple(index_dataset(spec))
            protocol = get_protocol(s.protocol)
            if protocol.crops:  # a crop or a frame size the protocol cannot work on: said before Ray starts
                protocol.region(load_depth(items[0], spec).shape, spec.crop)
        except (DataError, ProtocolError) as e:
            raise DataError(f"--eval-data {s.name}: {e}") from e
        out.append(EvalSet(s.name, spec, items, s.protocol))
    return tuple(out)


def eval_record(eval_sets: tuple) -> list[dict[str, Any]]:
    """What ``experiment.json`` (and the resume signature) records of each set."""
    from grid.experiment.prepare import spec_record

    # "protocol" only when one is set: experiments recorded before it existed still resume
    return [{"name": s.name, **spec_record(s.spec), "items": len(s.items),
             **({"protocol": s.protocol} if s.protocol != "none" else {})} for s in eval_sets]


def describe(eval_sets: tuple) -> str:
    """One line per set, for ``--dry-run``."""
    from grid.experiment.prepare import spec_summary

    return "\n".join(f"eval set {s.name}: {spec_summary(s.spec, len(s.items))}" for s in eval_sets)
