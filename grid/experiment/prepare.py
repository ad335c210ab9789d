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


def data_spec(data: Path | None, results: Path, **spec_kw: Any) -> DatasetSpec:
    """The dataset a run reads (``spec_kw``: ``DatasetSpec.detect``'s settings, ``None`` for
    detected); for the built-in scenes, where they will be, without generating them."""
    if data is None:
        return DatasetSpec(root=synthetic_root(results), format="cil")
    return DatasetSpec.detect(data, **{k: v for k, v in spec_kw.items() if v is not None})


def checked_items(spec: DatasetSpec) -> list[Item]:
    """The list's items, every file present and every item sound as far as its headers tell
    (``trainables.headers.check_headers``): a ``DataError`` naming the first bad ones otherwise."""
    items = index_dataset(spec)
    check_headers(items, spec)
    return items


def resolve_data(data: Path | None, results: Path, **spec_kw: Any) -> tuple[DatasetSpec, bool]:
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
                   val_fraction: float = 0.2, method: str | None = None,
                   threshold: float = 0.9) -> tuple[DataBundle, Split]:
    """Index the data (unless ``items`` are given) and compute (or load from the cache) the
    leakage-free split."""
    from grid.split.compute import DEFAULT_METHOD, compute_split
    from trainables.loop import DataBundle

    items = index_dataset(spec) if items is None else items
    split = compute_split(spec, items, method=method or DEFAULT_METHOD, threshold=threshold,
                          val_fraction=val_fraction, seed=seed, cache_dir=results / "splits")
    by_name: dict[str, Item] = {it.name: it for it in items}
    bundle = DataBundle(spec=spec, train=tuple(by_name[n] for n in split.train),
                        val=tuple(by_name[n] for n in split.val), split_id=split_id(split))
    return bundle, split


def split_id(split: Split) -> str:
    """Names the dataset and the split parameters (the cache file's stem)."""
    from grid.split.compute import cache_path

    return cache_path(Path("."), split.fingerprint, split.params).stem


def spec_record(spec: DatasetSpec) -> dict[str, Any]:
    return {"root": str(spec.root), "format": spec.format, "list_file": spec.list_file,
            "depth_scale": spec.depth_scale, "crop": list(spec.crop) if spec.crop else None}


def spec_summary(spec: DatasetSpec, n_items: int) -> str:
    """One line on a dataset as read: ``636 items, pairs layout, list .../pairs.txt, crop ...``."""
    return (f"{n_items} items, {spec.format} layout, list {spec.list_path}, crop {spec.crop or 'none'}"
            + (f", depth scale {spec.depth_scale:g}" if spec.format == "pairs" else ""))


def check_eval_data(eval_data: tuple) -> None:
    """Each ``--eval-data`` set's folder, list and item headers, as ``checked_items`` checks the
    training data (``resolve_eval_sets`` reads them again for the trials, with torch loaded)."""
    from trainables.data import DataError

    for s in eval_data:
        try:
            checked_items(DatasetSpec.detect(s.root, **s.spec_kwargs()))
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
