"""User code without forking: ``--plugins`` modules (a name or a ``.py`` file / package folder)
imported on the driver and in every trial, so that their ``@register_model`` builders join the
registry; and search-space files of the same shape as ``search_spaces/*.py``.

On a cluster the files reach the workers through Ray's runtime environment (``py_modules``,
see ``runtime_env_modules``); a trial imports a plugin from its path where that path exists
(one machine, a shared disk), else by its module name from what ``py_modules`` shipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


class PluginError(ImportError):
    """A plugin or space file that cannot be imported; the message names it."""


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or Path(spec).is_dir()


def module_name(spec: str) -> str:
    """The name a plugin is imported under: its file's stem, or the module name itself."""
    return Path(spec.rstrip("/")).stem if _is_path(spec) else spec


def import_file(path: Path, name: str) -> ModuleType:
    """Import ``path`` (a ``.py`` file or a package folder) as module ``name``."""
    target = path / "__init__.py" if path.is_dir() else path
    if not target.is_file():
        raise PluginError(f"{path}: no such Python file or package folder")
    spec = importlib.util.spec_from_file_location(name, target,
                                                  submodule_search_locations=[str(path)] if path.is_dir() else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: the module's classes pickle by this name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise PluginError(f"{path}: importing it failed: {type(e).__name__}: {e}") from e
    return module


def load_plugins(specs: list[str] | tuple[str, ...]) -> list[ModuleType]:
    """Import each plugin once per process (a reused trial process keeps its registrations)."""
    modules = []
    for spec in specs:
        name = module_name(spec)
        if name in sys.modules:
            modules.append(sys.modules[name])
        elif _is_path(spec) and Path(spec).expanduser().exists():
            modules.append(import_file(Path(spec).expanduser().resolve(), name))
        else:
            try:
                modules.append(importlib.import_module(name))
            except ImportError as e:
                raise PluginError(f"plugin {spec!r}: cannot import {name!r} ({e})") from e
    return modules


def resolved(specs: list[str] | tuple[str, ...]) -> list[str]:
    """The specs with files and folders as absolute paths (as trials on this machine find them)."""
    return [str(Path(s).expanduser().resolve()) if _is_path(s) else s for s in specs]


def runtime_env_modules(specs: list[str] | tuple[str, ...]) -> list[str]:
    """What Ray's ``py_modules`` must ship for the plugins given as files or folders."""
    return [s for s, given in zip(resolved(specs), specs, strict=True) if _is_path(given)]
