"""The driver's layers and the absence of import circles, as ``pyproject.toml`` states them
(``[tool.importlinter]``), checked by import-linter itself; and the two documented ways to start
a run both answer ``--help``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_lint_imports_keeps_every_contract() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports not installed: it is in the test extra (pip install -e '.[test]')"
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "KEPT" in out.stdout


def test_python_m_grid_run_and_depth_grid_run_show_the_same_help() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    module = subprocess.run([sys.executable, "-m", "grid.run", "--help"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    cli = subprocess.run([sys.executable, "-m", "grid.cli", "run", "--help"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert module.returncode == cli.returncode == 0, module.stderr + cli.stderr
    assert module.stdout == cli.stdout and module.stdout.startswith("usage: depth-grid run")
    assert "search spaces (--space):" in module.stdout and "--dry-run" in module.stdout
