"""Before the trials: the data, the shared split, and the experiment record a resume must match."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grid.experiment.plan import ExperimentError
from grid.split.compute import DEFAULT_METHOD, Split, cache_path, compute_split
from grid.synth import ensure_synthetic
from search_spaces.profiles import SYNTHETIC
from trainables.data import DatasetSpec, Item, index_dataset
from trainables.io import write_json
from trainables.loop import DataBundle


def resolve_data(data: Path | None, results: Path, **spec_kw: Any) -> tuple[DatasetSpec, bool]:
    """The dataset to train on (``spec_kw``: ``DatasetSpec.detect``'s settings, ``None`` for
    detected), and whether it is the built-in synthetic default, generated under
    ``<results>/synth`` on first use."""
    if data is not None:
        return DatasetSpec.detect(data, **{k: v for k, v in spec_kw.items() if v is not None}), False
    root = ensure_synthetic(results / "synth", **SYNTHETIC)
    print(f"No --data given: using the built-in synthetic scenes at {root} "
          f"({SYNTHETIC['scenes']} scenes x {SYNTHETIC['views']} views, CPU-sized profile). "
          "Pass --data DIR for real data.")
    return DatasetSpec(root=root, format="cil"), True


def prepare_bundle(spec: DatasetSpec, results: Path, *, seed: int = 0, val_fraction: float = 0.2,
                   method: str = DEFAULT_METHOD, threshold: float = 0.9) -> tuple[DataBundle, Split]:
    """Index the data and compute (or load from the cache) the leakage-free split."""
    items = index_dataset(spec)
    split = compute_split(spec, items, method=method, threshold=threshold, val_fraction=val_fraction,
                          seed=seed, cache_dir=results / "splits")
    by_name: dict[str, Item] = {it.name: it for it in items}
    bundle = DataBundle(spec=spec, train=tuple(by_name[n] for n in split.train),
                        val=tuple(by_name[n] for n in split.val), split_id=split_id(split))
    return bundle, split


def split_id(split: Split) -> str:
    """Names the dataset and the split parameters (the cache file's stem)."""
    return cache_path(Path("."), split.fingerprint, split.params).stem


def spec_record(spec: DatasetSpec) -> dict[str, Any]:
    return {"root": str(spec.root), "format": spec.format, "list_file": spec.list_file,
            "depth_scale": spec.depth_scale, "crop": list(spec.crop) if spec.crop else None}


def spec_summary(spec: DatasetSpec, n_items: int) -> str:
    """One line on a dataset as read: ``636 items, pairs layout, list .../pairs.txt, crop ...``."""
    return (f"{n_items} items, {spec.format} layout, list {spec.list_path}, crop {spec.crop or 'none'}"
            + (f", depth scale {spec.depth_scale:g}" if spec.format == "pairs" else ""))


def record_experiment(experiment_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``experiment.json``; refuse to resume an experiment started with other settings."""
    path = experiment_dir / "experiment.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("signature") != record["signature"]:
            raise ExperimentError(
                f"{experiment_dir} holds experiment {record['name']!r} started with other settings:\n"
                f"  before: {json.dumps(old.get('signature'), sort_keys=True)}\n"
                f"  now:    {json.dumps(record['signature'], sort_keys=True)}\n"
                "Re-run with the same options to resume it, or pass --name NEW for a new experiment.")
        record = {**old, **record}
    write_json(path, record)
    return record
