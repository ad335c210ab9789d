"""Before the trials: the data, the shared split, and the experiment record a resume must match.

The checks here (the data as its headers tell, a ``--name`` that holds another experiment) need
neither torch nor Ray, so a mistake is reported within seconds; the split (torch) is imported
only where it is computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grid.experiment.plan import ExperimentError
from search_spaces.profiles import SYNTHETIC
from trainables.data import DatasetSpec, Item, index_dataset
from trainables.headers import check_headers
from trainables.io import write_json

if TYPE_CHECKING:
    from grid.split.compute import Split
    from trainables.loop import DataBundle

SPLIT_KEYS = ("method", "threshold", "val_fraction", "seed", "crop")  # the split parameters a run sets
SHOWN_CHANGES = 4  # settings named in a refused resume; the rest are counted


def synthetic_root(results: Path) -> Path:
    """Where the built-in scenes are (or will be) generated: ``<results>/synth/<cache key>``."""
    from grid.synth import cache_key

    return results / "synth" / cache_key(**SYNTHETIC)


def data_spec(data: Path | str | None, results: Path, cache_dir: Path | None = None, **spec_kw: Any) -> DatasetSpec:
    """The dataset a run reads (``spec_kw``: ``DatasetSpec.detect``'s settings, ``None`` for
    detected); for the built-in scenes, where they will be, without generating them. A pack
    (``depth-grid pack``: its folder or URI) is opened through the node-local cache at
    ``cache_dir`` (default ``<results>/splits``; ``trainables.packed``), reading no shard."""
    if data is None:
        return DatasetSpec(root=synthetic_root(results), format="cil")
    from trainables.packed import dataset_spec

    return dataset_spec(data, cache_dir or results / "splits", **spec_kw)


def checked_items(spec: DatasetSpec) -> list[Item]:
    """The list's items, every file present and every item sound as far as its headers tell
    (``trainables.headers.check_headers``): a ``DataError`` naming the first bad ones otherwise."""
    items = index_dataset(spec)
    if spec.pack is None:  # a pack's items were read whole when packed; its shards are checked by hash
        check_headers(items, spec)
    return items


def resolve_data(data: Path | str | None, results: Path, **spec_kw: Any) -> tuple[DatasetSpec, bool]:
    """The dataset to train on, and whether it is the built-in synthetic default, generated under
    ``<results>/synth`` on first use."""
    from grid.synth import ensure_synthetic

    if data is not None:
        return data_spec(data, results, **spec_kw), False
    root = ensure_synthetic(results / "synth", **SYNTHETIC)
    print(f"No --data given: using the built-in synthetic scenes at {root} "
          f"({SYNTHETIC['scenes']} scenes x {SYNTHETIC['views']} views, CPU-sized profile). "
          "Pass --data DIR for real data.")
    return DatasetSpec(root=root, format="cil"), True


def prepare_bundle(spec: DatasetSpec, results: Path, *, items: list[Item] | None = None, seed: int = 0,
                   val_fraction: float = 0.2, method: str | None = None, threshold: float = 0.9,
                   gpu_worker: bool = False, accelerator: str | None = None,
                   cache_dir: Path | None = None) -> tuple[DataBundle, Split]:
    """Index the data (unless ``items`` are given) and compute (or load from the cache) the
    leakage-free split; ``gpu_worker``: a split not cached is computed by a Ray task on a GPU
    node (of type ``accelerator``; ``grid.experiment.split_task``)."""
    from grid.split.compute import DEFAULT_METHOD, cached_split, compute_split
    from trainables.loop import DataBundle

    items = index_dataset(spec) if items is None else items
    kwargs = dict(spec=spec, items=items, method=method or DEFAULT_METHOD, threshold=threshold,
                  val_fraction=val_fraction, seed=seed, cache_dir=split_cache(spec, results, cache_dir))
    split = None
    if gpu_worker:
        from grid.experiment.split_task import split_on_gpu_worker

        split = cached_split(**kwargs) or split_on_gpu_worker(kwargs, accelerator)
    split = split or compute_split(**kwargs)
    by_name: dict[str, Item] = {it.name: it for it in items}
    bundle = DataBundle(spec=spec, train=tuple(by_name[n] for n in split.train),
                        val=tuple(by_name[n] for n in split.val), split_id=split_id(split),
                        train_clusters=tuple(split.cluster_of[n] for n in split.train))
    return bundle, split


def audit_eval_sets(bundle: DataBundle, split: Split, eval_sets: tuple, results: Path,
                    cache_dir: Path | None = None) -> dict[str, Any] | None:
    """The leakage audit of each ``--eval-data`` set against the split's training side, at the
    split's threshold (``grid.split.audit``), with a warning line printed per leaky set; what
    ``experiment.json`` records as ``leakage_audit``. ``None`` without eval sets."""
    if not eval_sets:
        return None
    from grid.split.audit import AuditSet, audit, warning_lines

    threshold = float(split.params["threshold"])
    sets = [AuditSet(s.name, s.spec, s.items) for s in eval_sets]
    found = audit(bundle.train, bundle.spec, sets, threshold=threshold,
                  cache_dir=split_cache(bundle.spec, results, cache_dir))
    for line in warning_lines(found, threshold):
        print(line)
    return {"threshold": threshold, "train_images": len(bundle.train), "sets": found,
            "data": {s.name: spec_record(s.spec) for s in eval_sets}}


def split_from_storage(record: str, cache_dir: Path) -> bool:
    """Place the split a bucket's record holds (``<record>/split.json``, ``grid.experiment.remote``)
    in the local split cache, where ``compute_split`` finds it if it fits this data and these
    settings (its fingerprint and parameters name the cache entry): a resume on a fresh head
    computes no split. True when one was placed."""
    import shutil

    from grid.experiment.remote import RemoteError, fetch_file
    from grid.split.compute import Split, cache_path
    from trainables.data import DataError

    try:
        split = Split.from_json(local := fetch_file(f"{record}/split.json"))
    except (RemoteError, DataError):  # none there (a new experiment), or unreadable: computed as usual
        return False
    target = cache_path(cache_dir, split.fingerprint, split.params)
    if target.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, target)
    return True


def split_cache(spec: DatasetSpec, results: Path, cache_dir: Path | None = None) -> Path:
    """Where a run caches its split and embeddings: beside a pack's shards, else ``cache_dir``
    (``--cache-dir``), else ``<results>/splits``."""
    if spec.pack is not None:
        return Path(spec.pack.cache_root)
    return Path(cache_dir) if cache_dir is not None else results / "splits"


def split_id(split: Split) -> str:
    """Names the dataset and the split parameters (the cache file's stem)."""
    from grid.split.compute import cache_path

    return cache_path(Path("."), split.fingerprint, split.params).stem


def spec_record(spec: DatasetSpec) -> dict[str, Any]:
    return {"root": spec.pack.uri if spec.pack is not None else str(spec.root), "format": spec.format,
            "list_file": spec.list_file, "depth_scale": spec.depth_scale, "crop": list(spec.crop) if spec.crop else None,
            **({"pack": spec.pack.content_hash} if spec.pack is not None else {})}


def spec_summary(spec: DatasetSpec, n_items: int) -> str:
    """One line on a dataset as read: ``636 items, pairs layout, list .../pairs.txt, crop ...``."""
    source = f"pack {spec.pack.uri}" if spec.pack is not None else f"list {spec.list_path}"
    return (f"{n_items} items, {spec.format} layout, {source}, crop {spec.crop or 'none'}"
            + (f", depth scale {spec.depth_scale:g}" if spec.format == "pairs" else ""))


def check_eval_data(eval_data: tuple, cache_dir: Path | None = None) -> None:
    """Each ``--eval-data`` set's folder, list and item headers, as ``checked_items`` checks the
    training data (``resolve_eval_sets`` reads them again for the trials, with torch loaded)."""
    from trainables.data import DataError

    for s in eval_data:
        try:
            checked_items(s.dataset_spec(cache_dir))  # a pack (folder or URI) through the node cache
        except DataError as e:
            raise DataError(f"--eval-data {s.name}: {e}") from e


def check_weights(plan: list[tuple[str, dict[str, Any]]], spec: DatasetSpec, items: list[Item] | None, *,
                  cache_dir: Path, method: str, threshold: float, val_fraction: float, seed: int) -> None:
    """The MobileNetV2 weights, when the run needs them: for the split's embeddings unless the
    split is cached (``items`` None: data not generated yet), or for an architecture that loads
    them with ``pretrained=yes`` (``if_available`` falls back to random weights). Needed and not
    cached, they are downloaded from the standard places (``trainables.weights``); where none
    answers, ``WeightsUnavailableError`` names what was tried and ``depth-grid weights fetch``."""
    from trainables.weights import FILENAME, WeightsUnavailableError, ensure_mobilenet_v2

    try:
        ensure_mobilenet_v2(download=False)
        return
    except WeightsUnavailableError:
        pass
    if items is None or _split_missing(spec, items, cache_dir, method, threshold, val_fraction, seed):
        why = "the split's embeddings need them: no split of this data is cached"
    else:
        from grid.experiment.plan import concrete_configs
        from trainables.models.catalog import architectures

        # The catalog says where each architecture's weights come from: these name torchvision's file.
        known = architectures()
        archs = sorted({str(c["arch"]) for _, space in plan for c in concrete_configs(space) if c.get("pretrained", "yes")
                        == "yes" and FILENAME in getattr(known.get(c["arch"]), "source", "")})
        if not archs:
            return
        why = (f"{', '.join(archs)} with pretrained=yes need them; --set pretrained=if_available trains from "
               "random weights instead")
    try:
        ensure_mobilenet_v2()
    except WeightsUnavailableError as e:
        raise WeightsUnavailableError(f"{e} ({why})") from None


def _split_missing(spec: DatasetSpec, items: list[Item], cache_dir: Path, method: str, threshold: float,
                   val_fraction: float, seed: int) -> bool:
    # Cached splits are named <fingerprint>-<method>-<params>.json: with none of this method
    # there, nothing needs hashing the images or importing the split's code (torch).
    if not any(cache_dir.glob(f"*-{method}-*.json")):
        return True
    from grid.split.compute import cached_split

    return cached_split(spec, items, cache_dir=cache_dir, method=method, threshold=threshold,
                        val_fraction=val_fraction, seed=seed) is None


# ---- a resume must match ------------------------------------------------------------------------

def _flat(value: Any, key: str = "") -> dict[str, Any]:
    """Nested settings as ``{"a.b": leaf}``; a grid search is a leaf (its list of values)."""
    if isinstance(value, dict) and value and set(value) != {"grid_search"}:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{key}.{k}" if key else str(k)))
        return out
    return {key: value["grid_search"] if isinstance(value, dict) and value else value}


def _settings(signature: dict[str, Any]) -> dict[str, Any]:
    """A signature as flat settings; a single study's keys under their own names (``lr``)."""
    sig = dict(signature)
    studies = sig.pop("studies", None) or []
    flat = _flat(sig)
    if len(studies) == 1:
        flat.update(_flat(studies[0][1]))
    else:
        flat.update(_flat({name: space for name, space in studies}, "studies"))
    return flat


def _show(value: Any) -> str:
    text = json.dumps(value) if value is not None and not isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def signature_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The settings that differ between two resume signatures, each ``key: old -> new``."""
    before, after = _settings(old), _settings(new)
    keys = [*before, *(k for k in after if k not in before)]
    return [f"{k}: {_show(before.get(k))} -> {_show(after.get(k))}" for k in keys if before.get(k) != after.get(k)]


def _refusal(experiment_dir: Path, name: str, changes: list[str]) -> ExperimentError:
    more = f" (and {len(changes) - SHOWN_CHANGES} more)" if len(changes) > SHOWN_CHANGES else ""
    return ExperimentError(
        f"{experiment_dir} holds experiment {name!r} started with other settings "
        f"({'; '.join(changes[:SHOWN_CHANGES])}{more}): re-run with the same options to resume it, "
        "or pass --name NEW for a new experiment")


def _read_record(experiment_dir: Path) -> dict[str, Any] | None:
    path = experiment_dir / "experiment.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExperimentError(f"{path}: unreadable ({e}); move it away or pass --name NEW") from e


def _recorded_split_params(experiment_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the split the experiment trained on (its split JSON), as far as known."""
    named = Path(record.get("split") or "split.json")
    path = named if named.is_absolute() else experiment_dir / named
    try:
        return json.loads(path.read_text()).get("params", {})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return {"method": record.get("split_method"), "threshold": record.get("split_threshold")}


def check_resume(experiment_dir: Path, signature: dict[str, Any], split_params: dict[str, Any]) -> None:
    """Before any work: refuse to resume the experiment in ``experiment_dir`` with other settings.

    ``signature`` is the run's, without the split id (known only once the split is computed):
    the split's own parameters (``SPLIT_KEYS``) are compared with those the experiment's split
    JSON records instead. ``record_experiment`` checks the split id itself, later.
    """
    old = _read_record(experiment_dir)
    if old is None:
        return
    old_sig = {k: v for k, v in (old.get("signature") or {}).items() if k != "split"}
    changes = signature_changes(old_sig, signature)
    recorded = _recorded_split_params(experiment_dir, old)
    changes += [f"split.{k}: {_show(recorded.get(k))} -> {_show(split_params.get(k))}"
                for k in SPLIT_KEYS if k in recorded and recorded.get(k) != split_params.get(k)]
    if changes:
        raise _refusal(experiment_dir, old.get("name", experiment_dir.name), changes)


def record_experiment(experiment_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``experiment.json``; refuse to resume an experiment started with other settings."""
    old = _read_record(experiment_dir)
    if old is not None:
        if old.get("signature") != record["signature"]:
            raise _refusal(experiment_dir, record["name"],
                           signature_changes(old.get("signature") or {}, record["signature"]))
        record = {**old, **record}
    write_json(experiment_dir / "experiment.json", record)
    return record
