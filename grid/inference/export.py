"""Export a trained model as a Hugging Face model folder: config.json, model.safetensors, README.md.

    depth-grid export --experiment results/smoke --out exported/smoke
    depth-grid export --experiment results/smoke --trial 5c1e2_00001 --out exported/unet
    depth-grid export --experiment results/smoke --out exported/smoke --push-to-hub me/depth-smoke

The folder is ``huggingface_hub``'s PyTorch mixin format (``grid.inference.model.DepthGridModel``): it loads
with ``grid.load_model(FOLDER)`` or ``DepthGridModel.from_pretrained(FOLDER)``, no architecture
named by hand, and its model card says what trained it. Trial checkpoints are left as they are.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grid.experiment.record import Experiment


class ExportError(ValueError):
    """The export cannot be written where asked."""


def export(experiment: str | Path | Experiment, out: str | Path, *, trial: str | None = None,
           push_to_hub: str | None = None, command: Sequence[str] | None = None) -> Path:
    """Write the experiment's best trial (or ``trial``, a leaderboard ``trial_id``) to ``out``.

    Args:
        push_to_hub: a Hub repo id (``user/name``) to upload the folder to, after writing it.
        command: the command line recorded in the card (default: this process's).

    Returns:
        ``out``, holding ``config.json``, ``model.safetensors`` and ``README.md``; neither of the
        text files names an absolute local path (``grid.inference.model.portable``): the data by
        its folder's name, the checkpoint within the experiment's storage, paths on the recorded
        command lines by their last part.

    Raises:
        LeaderboardError: ``experiment`` is not an experiment folder or has no leaderboard.
        ValueError: no such trial, a checkpoint that cannot be used, ``out`` holds other files.
    """
    from grid.experiment.record import Experiment
    from grid.inference.model import experiment_model, portable
    from grid.inference.outputs import export_outputs
    from trainables.provenance import versions

    experiment = Experiment.load(experiment)
    out = Path(out).expanduser()
    export_outputs(out, experiment)  # before loading anything: a new, empty or earlier export folder
    model = experiment_model(experiment, trial)
    record = model.training_record
    print(f"Exporting trial {record.get('trial_id')} ({model.config['arch']}, epoch {record.get('epoch')}, "
          f"si_rmse {record.get('metrics', {}).get('si_rmse')}) from {record.get('checkpoint')}")
    model.config["training_record"] = {**record, "export": portable({  # no absolute local path
        "command": [str(a) for a in (command if command is not None else sys.argv)], "versions": versions()})}
    (out / "README.md").unlink(missing_ok=True)  # the mixin keeps an existing card: write it anew
    model.save_pretrained(out)
    print(f"written: {out} (config.json, model.safetensors, README.md)")
    if push_to_hub:
        try:  # the mixin uploads a fresh save of the same model and card
            model.push_to_hub(push_to_hub)
        except Exception as e:  # network, token and Hub errors alike; the local folder stays
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"push to {push_to_hub} failed ({first}); {out} is written") from e
        print(f"pushed to https://huggingface.co/{push_to_hub}")
    return out
