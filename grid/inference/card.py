"""The ``README.md`` model card of an exported model, filled from the model's own config.

``DepthGridModel`` hands this template to ``huggingface_hub``'s mixin (as smp's ``SMPHubMixin``
does); ``card_fields`` turns its config (architecture, input size, data record, training record)
into the template's values. Every field of the training record is optional: a card written for a
bare checkpoint, or for an experiment from before provenance was recorded, says "not recorded".
The config it is filled from names no absolute local path (``grid.inference.model.portable``):
the dataset by its folder's name, the checkpoint relative to the experiment's Tune storage.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from trainables import provenance

MODEL_CARD = """
---
{{ card_data }}
---

# {{ title }}

Monocular depth estimation: one RGB image in, depth in metres out (float32, the image's own
size). Trained with depth-grid, a Ray Tune experiment grid: {{ origin }}.

## Use

```python
from grid.inference.model import DepthGridModel

model = DepthGridModel.from_pretrained("<this folder or repo>")
depth = model.predict("photo.jpg")  # numpy (H, W) metres at the photo's size
```

`predict` normalises the image (ImageNet mean and std), resizes it to the training input size
{{ image_size }} (H x W), runs the network and resizes the log-depth back to the image's own
size, as `grid.predict` does. Images are predicted whole: the training crop below describes the
training data, not a rule for new images.

## Architecture

- Architecture: `{{ arch }}` {{ arch_kwargs }}: {{ description }}
- Encoder weights it started from: {{ weights }}
- Parameters: {{ params }}

## Data

{{ data }}

- Train / validation split: {{ split }}

## Training settings

{{ settings }}

## Validation metrics

{{ metrics }}

## Provenance

{{ provenance }}
"""

NOT_RECORDED = "not recorded"
# Standard depth metrics first, in this order; lower is better except delta1..3.
METRIC_ORDER = ("si_rmse", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
PACKAGES = ("python", *provenance.PACKAGES)  # the order the card lists versions in


def _table(rows: dict[str, Any], header: tuple[str, str] = ("setting", "value")) -> str:
    if not rows:
        return NOT_RECORDED
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {_value(v)} |" for k, v in rows.items()]
    return "\n".join(lines)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return f"`{json.dumps(v, sort_keys=True)}`"
    return "" if v is None else str(v).replace("|", "\\|")


def _data(data: dict | None, record: dict) -> str:
    if not data:
        return f"Dataset: {NOT_RECORDED} (exported from a bare checkpoint)."
    kind = "the built-in synthetic scenes (`grid.synth`)" if record.get("synthetic") else "a local dataset"
    crop = data.get("crop")
    rows = {"dataset folder": data.get("root"), "format": data.get("format"),
            "list file": data.get("list_file") or "the format's default",
            "depth scale (raw / metres)": data.get("depth_scale"),
            "crop (top, bottom, left, right)": crop if crop else "none"}
    return f"Trained on {kind}:\n\n" + _table(rows)


SPLITS = {  # grid.split's methods, in a sentence each
    "sequence": "images linked by embedding similarity (cosine >= {t}, or a looser link between "
                "list neighbours) form clusters; whole clusters go to validation, so near-duplicate "
                "views never straddle the split",
    "paper": "images linked by embedding similarity (cosine >= {t}) form clusters; whole clusters "
             "go to validation, so near-duplicate views never straddle the split",
    "random": "a naive random split (near-duplicates may sit on both sides)",
}


def _split(record: dict) -> str:
    method = record.get("split_method")
    if method is None:
        return NOT_RECORDED
    rule = SPLITS.get(method, "").format(t=record.get("split_threshold"))
    return f"`{method}`" + (f": {rule}" if rule else "")


def _metrics(record: dict) -> str:
    metrics = record.get("metrics") or {}
    shown = {k: metrics[k] for k in METRIC_ORDER if k in metrics}
    if "train_loss" in metrics:
        shown["train_loss"] = metrics["train_loss"]
    if not shown:
        return NOT_RECORDED
    epoch = record.get("epoch")
    return (f"On the validation split at epoch {epoch} (the trial's best SI-RMSE):\n\n"
            + _table(shown, ("metric", "value")))


def _provenance_lines(label: str, prov: dict) -> list[str]:
    if not prov:
        return [f"- {label}: {NOT_RECORDED}"]
    lines = []
    if prov.get("command"):
        lines.append(f"- {label} command: `{shlex.join(str(a) for a in prov['command'])}`")
    versions = prov.get("versions") or {}
    if versions:
        order = [k for k in PACKAGES if k in versions] + sorted(set(versions) - set(PACKAGES))
        lines.append(f"- {label} versions: " + ", ".join(f"{k} {versions[k]}" for k in order))
    git = prov.get("git") or {}
    if git.get("commit"):
        lines.append(f"- {label} git commit: `{git['commit']}`" + (" (uncommitted changes)" if git.get("dirty") else ""))
    if prov.get("device"):
        lines.append(f"- {label} device: {prov['device']}")
    return lines or [f"- {label}: {NOT_RECORDED}"]


def _provenance(record: dict) -> str:
    lines = _provenance_lines("Experiment", record.get("experiment_provenance") or {})
    lines += _provenance_lines("Trial", record.get("provenance") or {})
    if record.get("export"):
        lines += _provenance_lines("Export", record["export"])
    if record.get("checkpoint"):
        where = " (in the experiment's Tune storage)" if record.get("experiment") else ""
        lines.append(f"- Checkpoint{where}: `{record['checkpoint']}`")
    return "\n".join(lines)


def _weights(label: str | None, source: str | None) -> str:
    """The trial's weights label (``trainables.trainable.build_trial_model``) in words."""
    if label == "pretrained":
        return f"pretrained: {source}"
    if label and source and not source.startswith("none") and label.startswith("random"):
        return f"{label}, not the architecture's pretrained source ({source})"
    return label or NOT_RECORDED


def card_fields(config: dict, params: int | None = None) -> dict[str, Any]:
    """The template's values from a ``DepthGridModel`` config (its ``__init__`` arguments)."""
    from trainables.models import MODELS

    arch, record = config["arch"], config.get("training_record") or {}
    entry = MODELS.get(arch)
    size = config.get("image_size") or []
    return {
        "title": f"depth-grid {arch}" + (f" ({record['experiment']})" if record.get("experiment") else ""),
        "arch": arch,
        "arch_kwargs": f"`{json.dumps(config.get('kwargs') or {}, sort_keys=True)}`",
        "description": entry.description if entry else NOT_RECORDED,
        "weights": _weights(record.get("weights"), entry.source if entry else None),
        "params": f"{params:,}" if params is not None else NOT_RECORDED,
        "image_size": "x".join(str(s) for s in size) or NOT_RECORDED,
        "origin": (f"trial `{record.get('trial_id') or '?'}` of experiment `{record['experiment']}`"
                   if record.get("experiment") else "from a trial checkpoint"),
        "data": _data(config.get("data"), record),
        "split": _split(record),
        "settings": _table(record.get("trial_config") or {}),
        "metrics": _metrics(record),
        "provenance": _provenance(record),
    }
