"""A user's mistakes, typed at the real command line: each ends in one clear line naming the file,
setting or address, with its exit code, no traceback, quickly when no Ray is needed, and nothing
the user had is changed.

The cases are tables, one row per mistake: ``bad_input_run.py`` (run, the data tools, usage
errors) and ``bad_input_models.py`` (the commands that read a model or write outputs). Every case runs
``python -m grid.cli ARGV`` in a fresh process against a shared world: a synthetic dataset and a
finished ``smoke`` experiment, plus whatever the case's ``setup`` makes in its own folder. Before
and after, every file of the world and of the case's folder is hashed: a case that changes any
of them fails, whatever its exit code.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bad_input_models
import bad_input_run
import pytest
from bad_input_world import Case, World

ROOT = Path(__file__).resolve().parents[1]
CASES: list[Case] = [*bad_input_run.CASES, *bad_input_models.CASES]
MAX_LINES = 3
FAST_S = 5.0  # a check that needs no Ray: measured from the process's start to its exit


@pytest.fixture(scope="module")
def world(tmp_path_factory, ray_session) -> World:
    """The dataset and the finished experiment every case starts from (one smoke run)."""
    from grid.experiment.config import RunConfig
    from grid.experiment.run import run
    from grid.synth import generate

    root = tmp_path_factory.mktemp("world")
    data = generate(root / "d", scenes=6, views=4, size=(64, 80), seed=11)
    exp = run(RunConfig(space="smoke", data=data, results=root / "results", name="base", gpus_per_trial=0,
                        verbose=0))
    return World(root=root, data=data, exp=exp.path)


def _hashes(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_mistake_costs_nothing(case: Case, world: World, tmp_path: Path) -> None:
    here = tmp_path / "case"
    here.mkdir()
    w = world.for_case(here)
    if case.setup is not None:
        case.setup(w)
    argv = [str(a) for a in case.argv(w)]
    before = _hashes(world.root, here)
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")  # a run that does start Ray: short socket paths
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": ray_tmp, "HF_HUB_OFFLINE": "1",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "COLUMNS": "100", **case.env(w)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "grid.cli", *argv], cwd=here, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    shown = f"$ depth-grid {' '.join(argv)}\n{output[-3000:]}"
    assert proc.returncode == case.code, shown
    assert "Traceback" not in output, shown
    assert 1 <= len(lines) <= MAX_LINES, shown
    named = case.named(w) if callable(case.named) else case.named
    assert named in output, f"expected {named!r} in the output\n{shown}"
    if case.fast:
        assert elapsed < FAST_S, f"took {elapsed:.1f} s\n{shown}"
    after = _hashes(world.root, here)
    if case.may_add:  # a run that started may leave new files (Ray's, logs); nothing old may change
        after = {k: v for k, v in after.items() if k in before}
    assert after == before, f"files changed or written\n{shown}"
