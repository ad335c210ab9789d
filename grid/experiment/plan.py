"""Validate a whole plan before Ray starts: every trial setting a param space can produce.

Tune resolves a param space inside the run; a wrong value (``--set lr=-1``) would only surface
in each trial, after the split and Ray's start-up. Here every grid point is expanded, each
sampled domain is checked at its bounds (a categorical at every category), and each concrete
config goes through ``TrialConfig`` exactly as the trainable's door does.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from trainables.config import ConfigError, TrialConfig

# The split rules of grid.split.METHODS, named here so that parsing arguments needs no torch
# (tests/test_spaces.py checks the two agree).
SPLIT_METHODS = ("paper", "random", "sequence")
MAX_CONFIGS = 10_000  # a plan that expands further is checked on its first MAX_CONFIGS points


class ExperimentError(RuntimeError):
    """The experiment cannot start or resume as asked; the message says why."""


def _choices(value: Any) -> list[Any] | None:
    """The values a Tune search entry can take that matter for validation, or None (a constant)."""
    from ray.tune.search.sample import Categorical, Float, Integer

    if isinstance(value, dict) and set(value) == {"grid_search"}:
        return list(value["grid_search"])
    if isinstance(value, Categorical):
        return list(value.categories)
    if isinstance(value, Float):
        return [value.lower, value.upper]
    if isinstance(value, Integer):
        return [value.lower, value.upper - 1]  # upper is exclusive
    return None


def concrete_configs(param_space: dict[str, Any], *, bounds: bool = True) -> list[dict[str, Any]]:
    """Configs covering every grid point of ``param_space`` and, with ``bounds``, every domain
    bound and category; without, one config per grid point (as Tune's trials), domains kept."""
    from ray.tune.search.sample import Domain, Function

    fixed, varied, functions = {}, {}, {}
    for key, value in param_space.items():
        if isinstance(value, Function):
            functions[key] = value.func
        elif isinstance(value, Domain) and not bounds:
            fixed[key] = value
        elif (choices := _choices(value)) is not None:
            varied[key] = choices
        else:
            fixed[key] = value
    configs = []
    for combo in itertools.islice(itertools.product(*varied.values()), MAX_CONFIGS):
        config = {**fixed, **dict(zip(varied, combo, strict=True))}
        for key, func in functions.items():  # as Tune calls them: func(config), else the old func(spec)
            for arg in (dict(config), SimpleNamespace(config=SimpleNamespace(**config))):
                try:
                    config[key] = func(arg)
                    break
                except Exception:  # noqa: BLE001, S112 - a function of other samples: Tune checks it in the trial
                    continue
        configs.append(config)
    return configs


def trial_count(plan: list[tuple[str, dict[str, Any]]], search: dict[str, Any]) -> int:
    """How many trials the plan runs: grid points times ``num_samples``, per study."""
    return sum(len(concrete_configs(space, bounds=False)) * search["num_samples"] for _, space in plan)


def describe(value: Any) -> str:
    """A setting as a reader wants it in a table: numbers short, Tune domains by their range."""
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform

    if isinstance(value, Float):
        kind = "loguniform" if isinstance(value.get_sampler(), LogUniform) else "uniform"
        return f"{kind}({value.lower:g}, {value.upper:g})"
    if isinstance(value, Integer):
        return f"randint({value.lower}, {value.upper})"
    if isinstance(value, Categorical):
        return f"choice({', '.join(describe(c) for c in value.categories)})"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_values(plan: list[tuple[str, dict[str, Any]]]) -> tuple[int, set[str], set[str]]:
    """Every config through ``TrialConfig`` (``ConfigError`` naming the study, key, value and
    rule of the first invalid one); returns (configs checked, architectures, those asking for an
    encoder learning rate). Needs no model code."""
    checked, archs, lr_split = 0, set(), set()
    for name, param_space in plan:
        for config in concrete_configs(param_space):
            try:
                cfg = TrialConfig.from_dict(config)
            except ConfigError as e:
                raise ConfigError(f"experiment {name!r}: {e}") from None
            archs.add(cfg.arch)
            if cfg.encoder_lr_mult != 1:
                lr_split.add(cfg.arch)
            checked += 1
    return checked, archs, lr_split


def check_archs(archs: set[str], lr_split: set[str] = frozenset()) -> None:
    """``ExperimentError`` for an architecture the registry lacks, or one asked for an encoder
    learning rate that declares no encoder. Reads the zoo's catalog: no model library is imported."""
    from trainables.models.catalog import architectures

    known = architectures()
    unknown = sorted(archs - set(known))
    if unknown:
        raise ExperimentError(f"unknown architecture(s) {unknown}; valid: {', '.join(sorted(known))}")
    no_encoder = sorted(a for a in lr_split if not known[a].encoder)
    if no_encoder:
        raise ExperimentError(f"encoder_lr_mult needs an architecture that declares its encoder "
                              f"(register_model(encoder=...)); {no_encoder} do not")


def check_plan(plan: list[tuple[str, dict[str, Any]]]) -> int:
    """Raise ``ConfigError`` naming the study, key, value and rule of the first invalid setting,
    then ``ExperimentError`` for unknown architectures; return how many configs were checked."""
    checked, archs, lr_split = check_values(plan)
    check_archs(archs, lr_split)
    return checked
