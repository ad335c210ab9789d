"""A trained model ready for inference, saved and loaded the way the Hugging Face ecosystem does.

    from grid import load_model

    model = load_model("results/smoke")   # an experiment (its best trial), a checkpoint or an export
    depth = model.predict("photo.jpg")      # numpy (H, W) float32 metres at the photo's own size

``DepthGridModel`` wraps any architecture of the zoo (``trainables.models``) in one class whose
``__init__`` takes JSON values only: the architecture's name and kwargs, the training input size,
the data record and the training record. ``huggingface_hub.PyTorchModelHubMixin`` writes them to
``config.json`` next to ``model.safetensors`` (and a ``README.md`` card, ``grid.inference.card``), so
``DepthGridModel.from_pretrained(folder_or_repo)`` rebuilds the model with no architecture named
by hand. The zoo's own classes take networks as constructor arguments, which the mixin cannot
record; hence this one wrapper instead of the mixin on each of them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from PIL import Image
from torch import nn

from grid.experiment.record import Experiment
from grid.inference.card import MODEL_CARD, card_fields
from grid.inference.checkpoints import input_size, load_checkpoint_model
from grid.inference.inputs import image_inputs
from grid.inference.outputs import is_export
from grid.inference.predict import default_device, depth_maps
from trainables.data import DataError, load_rgb
from trainables.dataset import normalize, resize_image

ImageLike = str | os.PathLike | Image.Image | np.ndarray
class DepthGridModel(nn.Module, PyTorchModelHubMixin, library_name="depth-grid",
                     pipeline_tag="depth-estimation", tags=["depth-estimation", "depth-grid"],
                     model_card_template=MODEL_CARD):
    """A zoo architecture with what inference needs: its input size and its data record.

    Args:
        arch: a name in ``trainables.models.MODELS``.
        kwargs: the architecture's options (``{"size": "tiny"}``), as in ``build_model``.
        image_size: the training input ``[H, W]``; ``predict`` resizes every image to it.
        data: the experiment's data record (``experiment.json["data"]``: format, crop, depth
            scale, and the dataset's folder by name), kept for reference; ``predict`` takes an
            image whole whatever crop trained the model.
        training_record: what trained it (trial settings, metrics, weights, split, provenance),
            for the model card.

    ``config.json`` and the card hold no absolute local path (``portable``): a dataset root, a
    checkpoint or a path on a recorded command line is written by its last part(s).

    Example:
        >>> model = DepthGridModel("unet", {"size": "tiny"}, [32, 48])  # random weights
        >>> model.save_pretrained("out/unet")
        >>> DepthGridModel.from_pretrained("out/unet").predict(np.zeros((20, 30, 3), np.uint8)).shape
        (20, 30)
    """

    def __init__(self, arch: str, kwargs: dict, image_size: list[int], data: dict | None = None,
                 training_record: dict | None = None) -> None:
        super().__init__()
        from trainables.models import build_model  # loads every architecture's library

        passed = {"arch": arch, "kwargs": kwargs, "image_size": image_size, "data": data,
                  "training_record": training_record}
        dropped = sorted(k for k, v in passed.items() if v is not None and self.config.get(k) is None)
        if dropped:  # the mixin silently leaves out of config.json what it cannot write as JSON
            raise TypeError(f"DepthGridModel arguments {dropped} must be JSON values")
        # pretrained=False: the architecture only (offline); the weights come from the caller.
        self._setup(build_model(arch, pretrained=False, **kwargs), image_size, data)

    def _setup(self, net: nn.Module, image_size: list[int], data: dict | None) -> None:
        self.net = net
        self.image_size: tuple[int, int] = (int(image_size[0]), int(image_size[1]))
        self.data = data

    @property
    @torch.jit.unused
    def config(self) -> dict[str, Any]:
        """The ``__init__`` arguments, as written to ``config.json``."""
        return self._hub_mixin_config or {}

    @property
    def training_record(self) -> dict[str, Any]:
        return self.config.get("training_record") or {}

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, H, W)
        return self.net.forward_log(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # normalised RGB -> metres, (B, 1, H, W)
        return self.net(x)

    @torch.inference_mode()
    def predict(self, image: ImageLike, tta: bool | None = None) -> np.ndarray:
        """Depth in metres, float32 (H, W), at the image's own size.

        Args:
            image: an image file's path, a PIL image, or a uint8 (H, W, 3) RGB array.
            tta: flip test-time averaging; ``None``: as the trial validated (its ``tta`` setting).

        The same computation as ``grid.predict`` for one's own image: ImageNet normalisation,
        resize to ``image_size``, the network, log-depth resized back to (H, W), exp.
        """
        rgb = read_rgb(image)
        x = resize_image(normalize(rgb), self.image_size)  # (3, h, w)
        device = next(self.parameters()).device
        self.eval()
        if tta is None:
            tta = bool((self.training_record.get("trial_config") or {}).get("tta", False))
        [depth] = depth_maps(self.net, x[None].to(device), [rgb.shape[:2]], tta=tta)
        return depth

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        params = sum(p.numel() for p in self.parameters())
        return super().generate_model_card(*args, **{**card_fields(portable(self.config), params), **kwargs})

    def save_pretrained(self, save_directory: str | Path, *, config: dict | None = None, **kwargs) -> str | None:
        """The mixin's ``save_pretrained`` (and ``push_to_hub``, which saves through it), writing
        ``config.json`` with no absolute local path (``portable``); the card is written from the same."""
        config = portable(self.config if config is None else config)
        return super().save_pretrained(save_directory, config=config, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, strict: bool = True, **kwargs) -> DepthGridModel:
        # The mixin's default is strict=False, which would quietly keep random weights for keys
        # the file lacks; an exported model has every weight (smp's from_pretrained does this too).
        return super()._from_pretrained(strict=strict, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, experiment: Experiment | None = None,
                        trial: dict | None = None, device: str | torch.device = "cpu") -> DepthGridModel:
        """A trial checkpoint (``checkpoint.pt`` or its Tune folder) as a ``DepthGridModel``.

        Args:
            experiment: its experiment, for the data, split and input size.
            trial: its leaderboard row (``trial_id``, ``weights``), for the training record.
        """
        net, info = load_checkpoint_model(path, device)  # rebuilt and checked by grid.inference.checkpoints
        record = experiment.record if experiment is not None else {}
        size = input_size(info, None, experiment)
        info = {**info, "path": checkpoint_name(info["path"], experiment)}
        # portable: the config (config.json, the card) names no absolute local path
        args = portable(_jsonable({"arch": info["arch_config"]["name"], "kwargs": info["arch_config"]["kwargs"],
                                   "image_size": list(size), "data": record.get("data"),
                                   "training_record": training_record(info, record, trial or {})}))
        # The network is built and loaded already: record the config as a call of cls(**args)
        # would (the mixin does so in __new__) without building a second, random one in __init__.
        model = cls.__new__(cls, **args)
        nn.Module.__init__(model)
        model._setup(net, args["image_size"], args["data"])
        return model.eval()


def training_record(info: dict, experiment: dict, trial: dict) -> dict[str, Any]:
    """What trained a checkpoint: its own record (``load_checkpoint_model``'s ``info``), and the
    experiment's and leaderboard's when known. Every key is optional to the model card."""
    record = {
        "checkpoint": str(info["path"]), "epoch": info.get("epoch"), "metrics": info.get("metrics") or {},
        "weights": info.get("weights") or trial.get("weights") or None,
        "trial_config": info.get("trial_config") or {}, "provenance": info.get("provenance") or {},
    }
    if experiment:
        record.update({
            "experiment": experiment.get("name"), "space": experiment.get("space"),
            "trial_id": trial.get("trial_id"), "synthetic": experiment.get("synthetic"),
            "split_method": experiment.get("split_method"), "split_threshold": experiment.get("split_threshold"),
            "experiment_provenance": experiment.get("provenance") or {},
        })
    return record


# An absolute local path in a recorded string: POSIX (/a/b), home (~/a), Windows (C:\a, C:/a,
# \\host\share) or a file:// URI; not a URL's //host/path, a relative path or "a / b".
_ABSOLUTE = re.compile(r"file://[^\s'\"`|,;()\[\]]+"
                       r"|(?<![\w:/\\.~-])(?:~|[A-Za-z]:)?[/\\]{1,2}(?=[^\s/\\])[^\s'\"`|,;()\[\]]*")


def _last_part(path: str) -> str:
    return re.split(r"[/\\]+", path.removeprefix("file://").rstrip("/\\"))[-1]


def portable(value: Any) -> Any:
    """``value`` (a JSON value: a config, a record) with every absolute local path in its
    strings replaced by the path's last part: a data root ``/home/me/data/nyu`` is ``nyu``, a
    recorded ``--data=/tmp/x/scenes`` is ``--data=scenes``; a data record's ``root`` is its
    folder's name even when relative. What ``predict`` uses (format, crop, depth scale, input
    size, the trial's settings) is unchanged. An exported folder can be shared or pushed to the
    Hub without the machine it was made on (``tests/test_export.py`` checks config.json and the card)."""
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: _last_part(m.group()), value)
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, dict):
        out = {k: portable(v) for k, v in value.items()}
        data = out.get("data")
        if isinstance(data, dict) and isinstance(data.get("root"), str):  # the data record: by name
            out["data"] = {**data, "root": PurePath(data["root"].replace("\\", "/")).name or data["root"]}
        return out
    return value


def checkpoint_name(path: str | Path, experiment: Experiment | None = None) -> str:
    """A checkpoint as its experiment's storage names it, for the record: relative to the folder
    holding the experiment's Tune runs (``smoke/train_depth_..._00000/checkpoint_000000/checkpoint.pt``),
    else its last three parts (trial folder, checkpoint folder, file)."""
    path = Path(path)
    bases: list[Path] = []
    if experiment is not None:
        record = experiment.record
        bases += [Path(d).parent for d in record.get("tune_dirs") or [] if "://" not in str(d)]
        storage = record.get("storage")
        if storage and "://" not in storage:
            bases.append(Path(storage))
        bases.append(experiment.path)
    for base in bases:
        for candidate in (base, base.expanduser().resolve()):
            if path.is_relative_to(candidate):
                return path.relative_to(candidate).as_posix()
    return PurePath(*path.parts[-3:]).as_posix() if path.is_absolute() else path.as_posix()


def _jsonable(obj: Any) -> Any:
    """A plain-JSON copy (numpy scalars, paths and tuples made JSON; no shared sub-objects,
    which the mixin's JSON check rejects)."""
    return json.loads(json.dumps(obj, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def read_rgb(image: ImageLike) -> np.ndarray:
    """uint8 (H, W, 3) RGB from a path (read as ``grid.predict`` reads one's own images), a PIL
    image or an array."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if path.is_dir():
            raise DataError(f"{path}: a folder; predict takes one image (python -m grid.predict takes folders)")
        found = image_inputs(path)  # one's own image: whole, at its own size
        return load_rgb(found.items[0], found.spec)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    what = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
    raise TypeError(f"predict takes an image path, a PIL image or a uint8 (H, W, 3) array, not a {what}")


def experiment_model(experiment: str | Path | Experiment, trial: str | None = None,
                     device: str | torch.device = "cpu") -> DepthGridModel:
    """An experiment's trial ``trial`` (a leaderboard ``trial_id``), else its best trial."""
    experiment = Experiment.load(experiment)
    row = experiment.trial_row(trial)
    return DepthGridModel.from_checkpoint(row["checkpoint"], experiment=experiment, trial=row, device=device)


def load_model(path: str | Path, *, trial: str | None = None,
               device: str | torch.device | None = None) -> DepthGridModel:
    """A model ready for inference (eval mode, on ``device``) with ``image_size`` and ``data``.

    Args:
        path: an exported folder (``depth-grid export``), an experiment folder (its best trial,
            or ``trial``), or a trial checkpoint (``checkpoint.pt`` or its Tune folder).
        device: default: CUDA when available, as ``grid.predict``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is none of the above, or the checkpoint cannot be used.
    """
    path = Path(path).expanduser()
    device = device or default_device()
    if not path.exists():
        raise FileNotFoundError(f"{path}: does not exist (load_model takes an experiment folder, "
                                "a trial checkpoint or an exported folder)")
    if (path / "experiment.json").is_file():
        return experiment_model(path, trial, device).to(device).eval()
    if trial is not None:
        raise ValueError(f"{path}: trial={trial!r} needs an experiment folder, and this is not one")
    if is_export(path):
        model = DepthGridModel.from_pretrained(path)
    elif path.is_file() or (path / "checkpoint.pt").is_file():
        model = DepthGridModel.from_checkpoint(path, device=device)
    else:
        raise ValueError(f"{path}: not an experiment folder (experiment.json), a trial checkpoint "
                         "(checkpoint.pt) or an exported folder (config.json + model.safetensors)")
    return model.to(device).eval()
