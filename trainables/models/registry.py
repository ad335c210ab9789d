"""One registry of architectures: ``name -> builder``, and ``build_model``.

Pretrained sources are resolved in this order (as timm's ``_builder`` does):
1. ``pretrained=DIR`` holding a depth-grid ``config.json`` + ``model.pt`` (``save_pretrained``):
   the whole model, its saved kwargs updated by the caller's.
2. ``pretrained=FILE`` (``.pt``/``.pth``): a whole-model state dict or a trial checkpoint.
3. ``pretrained=DIR`` of another kind (a local Hugging Face snapshot) or ``pretrained=True``:
   passed to the builder, which loads its encoder from there or from its documented source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainables.models.base import WEIGHTS_NAME, DepthModel, read_saved_config
from trainables.models.catalog import BUILT_IN, ArchInfo


@dataclass(frozen=True)
class ModelEntry:
    builder: Callable[..., DepthModel]
    info: ArchInfo  # the facts, known without the builder (catalog.py)

    @property
    def source(self) -> str:
        return self.info.source

    @property
    def description(self) -> str:
        return self.info.description

    @property
    def encoder(self) -> tuple[str, ...]:
        return self.info.encoder

    @property
    def has_released_weights(self) -> bool:
        return self.info.has_released_weights


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, source: str | None = None, description: str | None = None,
                   encoder: tuple[str, ...] = (), **facts):
    """Decorator adding ``builder(pretrained=..., **kw) -> DepthModel`` under ``name``.

    A built-in architecture takes its facts from ``catalog.BUILT_IN`` (give none here); a
    plugin's states ``source`` (where ``pretrained=True`` loads from, "none ..." if nowhere) and
    ``description``, and optionally ``encoder``: the prefixes of the encoder's parameter names
    (e.g. ``("net.encoder.",)``), the group that ``encoder_lr_mult`` gives its own learning
    rate; without them that setting is refused for the architecture. Other ``ArchInfo`` fields
    (``hub``, ``licence``...) may follow as keywords.
    """
    if name in BUILT_IN:
        if source is not None or description is not None or encoder or facts:
            raise ValueError(f"model {name!r} is built in: its facts live in trainables/models/catalog.py")
        info = BUILT_IN[name]
    elif source is None or description is None:
        raise ValueError(f"register_model({name!r}) needs source= and description=")
    else:
        info = ArchInfo(source=source, description=description, encoder=tuple(encoder), **facts)

    def wrap(builder: Callable[..., DepthModel]) -> Callable[..., DepthModel]:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = ModelEntry(builder, info)
        return builder

    return wrap


class PretrainedWeightsError(RuntimeError):
    """Weights were asked for and cannot be had; the message says how to provide them."""


def _state_dict_from_file(path: Path) -> dict:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a trial checkpoint
    return obj


def build_model(name: str, *, pretrained: bool | str | Path = False, **kw) -> DepthModel:
    """Build a registered architecture.

    Args:
        name: a key of ``MODELS`` (``depth-grid models`` lists them).
        pretrained: ``False`` (random init), ``True`` (the architecture's documented source),
            or a local directory / file (see the module docstring).
        **kw: architecture options, e.g. ``size="tiny"``.

    Examples:
        >>> m = build_model("unet", size="tiny")
        >>> m = build_model("segformer_b4", pretrained=True)  # nvidia/segformer-b4-finetuned-ade-512-512
        >>> m = build_model("unet", pretrained="runs/unet_saved")  # from save_pretrained
    """
    _ensure_registered()
    if name not in MODELS:
        raise KeyError(f"unknown architecture {name!r}; valid: {', '.join(sorted(MODELS))}")
    full_state, source = None, pretrained
    if isinstance(pretrained, (str, Path)):
        path = Path(pretrained).expanduser()
        if not path.exists():
            raise PretrainedWeightsError(f"{path}: pretrained weights path does not exist")
        saved = read_saved_config(path) if path.is_dir() else None
        if saved is not None:
            if saved["name"] != name:
                raise PretrainedWeightsError(
                    f"{path}: holds a {saved['name']!r} model, not {name!r}")
            kw = {**saved.get("kwargs", {}), **kw}
            full_state = torch.load(path / WEIGHTS_NAME, map_location="cpu", weights_only=True)
            pretrained = False
        elif path.is_file():
            full_state = _state_dict_from_file(path)
            pretrained = False
    model = MODELS[name].builder(pretrained=pretrained, **kw)
    model.arch_config = {"name": name, "kwargs": dict(kw)}
    if full_state is not None:
        try:
            missing, unexpected = model.load_state_dict(full_state, strict=False)
        except RuntimeError as e:  # strict=False still raises on shape mismatches
            raise PretrainedWeightsError(f"{source!s}: weights do not fit {name!r} {kw}: {e}") from e
        if missing or unexpected:
            raise PretrainedWeightsError(
                f"{source!s}: weights do not fit {name!r} {kw}: {len(missing)} missing keys "
                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    return model


def parameter_groups(model: DepthModel) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """``(encoder, rest)``: the model's parameters split by its registry entry's ``encoder``
    prefixes. Raises ``ValueError`` for an architecture that declares none."""
    _ensure_registered()
    name = model.arch_config["name"]
    prefixes = MODELS[name].encoder
    if not prefixes:
        raise ValueError(f"architecture {name!r} declares no encoder parameters (register_model(encoder=...))")
    encoder, rest = [], []
    for key, p in model.named_parameters():
        (encoder if key.startswith(prefixes) else rest).append(p)
    if not encoder:
        raise ValueError(f"architecture {name!r}: no parameter starts with its encoder prefixes {prefixes}")
    return encoder, rest


def _ensure_registered() -> None:
    from trainables.models import register_all

    register_all()
