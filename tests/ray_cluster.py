"""Helpers for tests that start real Ray clusters on this machine with `ray start --block`.

Each node runs in its own process group and is stopped by signalling that group, never with
`ray stop` (which stops every Ray on the machine, other people's included). A cluster's temp dir
is a short path under /tmp (Ray's socket paths are length-limited); any process whose command line
still names it after the nodes stopped is a leftover of ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import pytest
from conftest import require_or_skip

RAY = str(Path(sys.executable).with_name("ray"))
# Prints the cluster's nodes once `want` of them are alive (run in a subprocess, not here).
NODES = """
import json, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
deadline = time.time() + 120
while True:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) >= int(sys.argv[2]) or time.time() > deadline:
        break
    time.sleep(1)
print(json.dumps([{"id": n["NodeID"], "resources": n["Resources"]} for n in nodes]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    """This environment without RAY_ADDRESS, CPU-only, no usage stats, no token."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def stop_group(proc: subprocess.Popen, name: str) -> None:
    """SIGTERM the node's process group (what `ray stop` sends), SIGKILL what is left."""
    for error in stop_groups([(name, proc)]):
        raise RuntimeError(error)


def stop_groups(nodes: list[tuple[str, subprocess.Popen]]) -> list[str]:
    """``stop_group`` for several nodes at once: every group gets each signal before any is waited
    for (the nodes shut down side by side, not one after another); returns the groups that did not stop."""
    running = list(nodes)
    # A node's Ray processes exit within seconds of SIGTERM; the `ray start --block` parent can sit
    # out the whole grace period (measured: 30 s), so 10 s, then SIGKILL: these are test clusters.
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        for _, proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.time() + wait
        while running and time.time() < deadline:
            for name, proc in list(running):
                try:
                    os.killpg(proc.pid, 0)
                    proc.poll()
                except ProcessLookupError:
                    proc.wait(timeout=5)
                    running.remove((name, proc))
            time.sleep(0.5)
        if not running:
            return []
    return [f"{name} (process group {proc.pid}) did not stop" for name, proc in running]


def leftovers(temp: str) -> list[int]:
    """Processes whose command line names this cluster's temp dir (left behind: ours alone)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and temp in (d / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


class Nodes:
    """The `ray start --block` processes of one test cluster, logging to ``logs/<name>.log``."""

    def __init__(self, logs: Path) -> None:
        if not Path(RAY).exists():
            require_or_skip(f"the ray command is not beside {sys.executable}")
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.temp = tempfile.mkdtemp(prefix="rm", dir="/tmp")  # short: socket paths are length-limited
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def common(self) -> list[str]:
        return ["--block", f"--temp-dir={self.temp}", "--object-store-memory=100000000", "--disable-usage-stats"]

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "w") as log:
            proc = subprocess.Popen([RAY, "start", *args, *self.common()], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def fail(self, why: str) -> NoReturn:
        text = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log")))
        pytest.fail(f"{why}\n{text}")

    def wait_for_gcs(self, port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
        """Until the head's GCS accepts connections."""
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                self.fail("the head node exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.time() > deadline:
                    self.fail("the head node did not start")
                time.sleep(1)

    def alive(self, address: str, want: int, env: dict[str, str]) -> list[dict]:
        """The alive nodes ({id, resources}) once `want` are up (or after 2 minutes)."""
        out = subprocess.run([sys.executable, "-c", NODES, address, str(want)], env=env, capture_output=True,
                             text=True, timeout=180)
        if out.returncode != 0:
            self.fail(f"listing nodes failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        """Stop every node, kill what outlived them, remove the temp dir; fail on leftovers."""
        errors = stop_groups(list(reversed(self.procs)))
        time.sleep(1)
        left = leftovers(self.temp)
        for pid in left:  # a Ray process that left the node's process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            errors.append(f"Ray processes outlived their node: {left}")
        shutil.rmtree(self.temp, ignore_errors=True)
        assert not errors, errors
