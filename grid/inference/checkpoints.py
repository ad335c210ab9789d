"""Trial checkpoints as models: read, check and rebuild (``load_checkpoint_model``), the best one
of an experiment (``resolve_checkpoint``), and the settings a checkpoint is run with: its input
size (``input_size``) and flip test-time averaging (``use_tta``)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from grid.experiment.record import Experiment
from grid.experiment.remote import RemoteError, fetch_file
from trainables.data import DEFAULT_SIZE
from trainables.io import is_uri

if TYPE_CHECKING:  # torch and the zoo load on first use: a wrong file is refused before either
    import torch

    from trainables.models import DepthModel

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"  # the file in a Tune checkpoint folder
# torch.compile and DataParallel prefix parameter names; strip them so such checkpoints still load.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def _unreadable(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable PyTorch checkpoint ({why})")


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file ``path`` names (a ``checkpoint.pt``, or the Tune checkpoint folder
    holding one), checked to be what ``torch.save`` writes by its first bytes and, for a zip
    archive, its table of contents: a text file, a truncated file or a zip of other things is
    refused in a moment, before torch is imported. ``torch.load`` still checks the rest. A URI
    (``gs://``, ``s3://``: a trial's checkpoint in a bucket) is fetched once into the node's cache."""
    if is_uri(path):
        uri = str(path).rstrip("/")
        try:
            path = fetch_file(uri if uri.endswith(".pt") else f"{uri}/{CHECKPOINT}")
        except RemoteError as e:
            raise CheckpointError(str(e)) from None
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise CheckpointError(f"{path}: a folder without a {CHECKPOINT}")
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    with path.open("rb") as fh:
        head = fh.read(16)
    if not head:
        raise _unreadable(path, "empty file")
    if head.startswith(b"PK"):  # torch.save's zip archive (since torch 1.6)
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise _unreadable(path, f"truncated or damaged zip archive: {e}") from e
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            raise _unreadable(path, f"a zip archive of {', '.join(names[:3]) or 'nothing'}"
                                    f"{', ...' if len(names) > 3 else ''}, without torch.save's data.pkl")
    elif not head.startswith(b"\x80"):  # the legacy format is a pickle, protocol 2 or later
        raise _unreadable(path, f"neither the zip archive nor the pickle torch.save writes; it starts {head!r}")
    return path


def _read_checkpoint(path: Path) -> dict:
    """The checkpoint's dict, from a file ``checkpoint_file`` passed."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's weights-only unpickler raises KeyError, IndexError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise _unreadable(path, f"{type(e).__name__}: {first}" if first else type(e).__name__) from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or not isinstance(
            ckpt.get("arch_config"), dict):
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: not a depth-grid trial checkpoint (expected a dict with 'model' and "
            f"'arch_config'; found {keys})")
    arch = ckpt["arch_config"]
    if not isinstance(arch.get("name"), str) or not isinstance(arch.get("kwargs", {}), dict):
        raise CheckpointError(f"{path}: malformed arch_config {arch!r} (need 'name' and 'kwargs')")
    return ckpt


def _strip_wrappers(state: dict) -> dict:
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _check_fit(path: Path, model: torch.nn.Module, state: dict, desc: str) -> None:
    """Raise a readable error when ``state`` does not fit ``model`` (before load_state_dict's wall of text)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    problems = [f"{len(found)} {what} (e.g. {', '.join(found[:3])})"
                for what, found in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("shape mismatches (checkpoint vs model)", shapes)) if found]
    if problems:
        raise CheckpointError(f"{path}: weights do not fit architecture {desc}: "
                              f"{'; '.join(problems)}. Was it saved by another model?")


def load_checkpoint_model(path: str | Path, device: str | torch.device = "cpu"
                          ) -> tuple[DepthModel, dict]:
    """Rebuild the model a trial checkpoint was saved from, in eval mode on ``device``.

    Returns:
        ``(model, info)`` where ``info`` has ``path``, ``arch_config``, ``epoch``, ``metrics``,
        ``image_size`` (``(h, w)`` or ``None`` when the checkpoint does not record it), and
        ``trial_config``, ``weights`` and ``provenance`` (empty or ``None`` when not recorded).

    Raises:
        CheckpointError: missing, corrupt or foreign file; unknown architecture; weights that do
            not fit the architecture.
    """
    path = checkpoint_file(path)
    ckpt = _read_checkpoint(path)
    # every architecture's library: imported once the file is known to be a checkpoint
    from trainables.models import build_model

    name, kwargs = ckpt["arch_config"]["name"], dict(ckpt["arch_config"].get("kwargs", {}))
    try:
        model = build_model(name, **kwargs)
    except KeyError as e:
        raise CheckpointError(f"{path}: {e.args[0] if e.args else e}") from e
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild {name!r} with {kwargs}: {e}") from e
    state = _strip_wrappers(ckpt["model"])
    _check_fit(path, model, state, f"{name!r} {kwargs}")
    model.load_state_dict(state, strict=True)
    size = ckpt.get("image_size")
    info = {
        "path": path,
        "arch_config": {"name": name, "kwargs": kwargs},
        "epoch": ckpt.get("epoch"),
        "metrics": ckpt.get("metrics") or {},
        "image_size": (int(size[0]), int(size[1])) if size is not None else None,
        # what trained it, for a model card (grid.inference.model): absent in hand-made checkpoints
        "trial_config": ckpt.get("trial_config") or {}, "weights": ckpt.get("weights"),
        "provenance": ckpt.get("provenance") or {},
    }
    return model.to(device).eval(), info


def resolve_checkpoint(checkpoint: str | Path | None = None,
                       experiment: str | Path | Experiment | None = None) -> Path:
    """``checkpoint`` as given, or the best trial's checkpoint of ``experiment``; checked to
    exist and look like a checkpoint (``checkpoint_file``) before anything loads."""
    if (checkpoint is None) == (experiment is None):
        raise ValueError("give exactly one of checkpoint or experiment")
    if checkpoint is not None:
        return checkpoint_file(checkpoint)
    return checkpoint_file(Experiment.load(experiment).best_checkpoints(1)[0])


def input_size(info: dict, override: tuple[int, int] | None = None,
               experiment: Experiment | None = None) -> tuple[int, int]:
    """The model input size: ``override`` (``--image-size``), else the checkpoint's, else the
    experiment's, else 426x560 with a warning. The one rule every command that predicts uses."""
    size = override or info["image_size"] or (experiment.image_size if experiment is not None else None)
    if size is None:
        size = DEFAULT_SIZE
        log.warning("%s records no image_size; using %dx%d (pass --image-size)", info["path"], *size)
    return size


def use_tta(info: dict, override: bool | None = None) -> bool:
    """Flip TTA: ``override`` (``--tta`` / ``--no-tta``), else what the trial validated with."""
    tta = bool(info["trial_config"].get("tta", False)) if override is None else override
    log.info("flip test-time averaging: %s (%s)", "on" if tta else "off",
             "--tta/--no-tta" if override is not None else "the trial's setting")
    return tta
