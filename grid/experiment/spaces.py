"""Search spaces as a run sees them: a space by name or file, and the plan it makes.

A plan is a list of ``(Tune experiment name, param space)`` studies: one, or one per
architecture (Optuna). The CPU profile, ``--epochs``, ``--image-size`` and ``--set`` are laid
over the space's own values, in that order; keys no trial setting knows are refused.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

import search_spaces
from grid.experiment.config import RunConfig
from grid.experiment.plan import ExperimentError, trial_count
from search_spaces.profiles import CPU_DEFAULT
from trainables.config import TrialConfig

SPACE_ATTRS = ("DESCRIPTION", "ARCHS", "SEARCH", "space")
Plan = list[tuple[str, dict[str, Any]]]


def available_spaces() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(search_spaces.__path__) if m.name != "profiles")


def load_space(name: str) -> ModuleType:
    """A built-in space by name, or a space file of the same shape (``--space my_space.py``)."""
    if name.endswith(".py"):
        from trainables.plugins import PluginError, import_file

        path = Path(name).expanduser().resolve()
        try:
            module = import_file(path, f"depth_grid_space_{path.stem}")
        except PluginError as e:
            raise ExperimentError(str(e)) from e
        missing = [a for a in SPACE_ATTRS if not hasattr(module, a)]
        if missing:
            raise ExperimentError(f"{path}: a search space file needs {', '.join(SPACE_ATTRS)}; "
                                  f"missing {', '.join(missing)} (see search_spaces/smoke.py)")
        return module
    if name not in available_spaces():
        raise ExperimentError(f"unknown search space {name!r}; valid: {', '.join(available_spaces())} "
                              "or a path to a space file (.py)")
    return importlib.import_module(f"search_spaces.{name}")


def studies(space_mod: ModuleType, cfg: RunConfig, *, cpu_profile: bool | None = None) -> Plan:
    """The plan: (Tune experiment name, param space) pairs, every key a trial setting.
    ``cpu_profile``: lay the CPU profile over the space (default: when the data is synthetic)."""
    profile = cfg.synthetic if cpu_profile is None else cpu_profile
    overrides: dict[str, Any] = dict(CPU_DEFAULT) if profile else {}
    if cfg.epochs:
        overrides["epochs"] = cfg.epochs
    if cfg.image_size:
        overrides["image_size"] = list(cfg.image_size)
    overrides.update(cfg.set)
    overrides.update(seed_override(space_mod, cfg))
    archs = list(cfg.arch) or space_mod.ARCHS
    name = cfg.experiment_name
    if space_mod.SEARCH.get("per_arch"):
        plan = [(f"{name}-{a}", {**space_mod.space([a]), **overrides}) for a in archs]
    else:
        plan = [(name, {**space_mod.space(archs), **overrides})]
    valid = {f.name for f in dataclasses.fields(TrialConfig)}
    for _, param_space in plan:
        unknown = sorted(set(param_space) - valid)
        if unknown:
            raise ExperimentError(f"search space {cfg.space!r} (or --set) has unknown key(s) {unknown}; "
                                  f"valid trial settings: {', '.join(sorted(valid))}")
    return plan


def seed_override(space_mod: ModuleType, cfg: RunConfig) -> dict[str, Any]:
    """``--seeds``: the trial seed as one more grid dimension (the leaderboard groups the rows that
    differ only by it); nothing for ``--seeds 1``. A search algorithm (Optuna) rejects a grid."""
    seeds = cfg.trial_seeds
    if len(seeds) > 1 and space_mod.SEARCH.get("algorithm", "grid") != "grid":
        raise ExperimentError(f"--seeds {cfg.seeds}: space {cfg.space!r} uses the {space_mod.SEARCH['algorithm']} "
                              "search algorithm, which samples its own points and takes no seed grid; "
                              "use --seeds with a grid space")
    if not seeds:
        return {}
    from ray import tune

    return {"seed": tune.grid_search(list(seeds)) if len(seeds) > 1 else seeds[0]}


def spaces_table() -> str:
    """Each built-in space with its trial count (at the paper's settings) and description."""
    rows = []
    for name in available_spaces():
        mod = importlib.import_module(f"search_spaces.{name}")
        count = trial_count(studies(mod, RunConfig(space=name), cpu_profile=False), mod.SEARCH)
        rows.append(f"  {name:<13} {count:>3} trials  {mod.DESCRIPTION}")
    return "\n".join(rows)


def stable(obj: Any) -> Any:
    """A JSON-able description of a param space that is the same in every run (no addresses)."""
    if isinstance(obj, dict):
        return {str(k): stable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [stable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    func = getattr(obj, "func", None)
    if callable(func):
        return f"sample_from:{func.__module__}.{func.__qualname__}"
    return {"type": type(obj).__name__, **{k: stable(v) for k, v in sorted(vars(obj).items()) if not k.startswith("_")}}
