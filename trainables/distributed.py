"""Data-parallel trials: a trial that holds N GPUs trains on all of them, one process per GPU.

The trial's own process (Tune's trainable) is rank 0: it starts ranks 1..N-1 as local processes
(``python -m trainables.distributed``, which runs ``trainables.trainable.follow``), on the GPUs Ray gave the trial (``CUDA_VISIBLE_DEVICES``,
which they inherit: rank r uses ``cuda:r``), and joins them in a ``torch.distributed`` process
group, NCCL on CUDA and gloo on the CPU. Only rank 0 talks to Tune: it reports, checkpoints and
validates; the others train and wait for it at the end of each epoch. Rank 0 alone owns the
followers' lifetime: they die with it (``PR_SET_PDEATHSIG``), ignore SIGTERM (rank 0 handles the
preemption notice and stops them), and are killed when its training ends with an error.

Step ``s`` of an epoch is the same micro-batch as in a one-process trial (the ``EpochSampler``'s
order, each rank reading its own share, ``EpochSampler.shard``); a round of N steps trains one on
each rank, and an optimiser step sums the gradients of its accumulation group over the ranks
(``Ranks.sum_grads``). Why torch's process group and not Ray Train: ``docs/DESIGN.md``,
"Multi-GPU trials".
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
# The followers wait this long at the end of an epoch while rank 0 validates and reports.
COLLECTIVE_TIMEOUT = timedelta(hours=2)
START_TIMEOUT = timedelta(minutes=5)  # for the followers to start (import torch, the models) and join
STOP_SECONDS = 60.0  # for the followers to exit after the last epoch
DEAD_WAIT_S = 15.0  # after rank 0's error: for a dying follower to exit, so the error can name it


@dataclass
class Ranks:
    """This process's place in its trial's process group; ``SINGLE``, the one-process trial,
    makes every collective a no-op. ``control`` is a gloo group for flags and Python objects, so
    they never wait on the GPU (on the CPU the default group is gloo already: ``None``)."""

    rank: int = 0
    world: int = 1
    control: Any = None

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: ``cuda:rank`` of the trial's GPUs, or ``device``."""
        return torch.device("cuda", self.rank) if device.type == "cuda" and self.world > 1 else device

    def decide(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (a checkpoint due now): every rank then takes the same
        path through the step, and none waits in a collective the others skip."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)])
        dist.broadcast(value, src=0, group=self.control)
        return bool(value.item())

    def all_losses(self, pending: list[tuple[int, torch.Tensor]], n_steps: int) -> list[tuple[int, float]]:
        """The ``(step, loss)`` pairs of every rank since the last read, in step order, read back
        in one sync; each rank holds one pair per round (steps past ``n_steps``: placeholders)."""
        mine = torch.stack([loss.float() for _, loss in pending])
        if self.world == 1:
            return list(zip((step for step, _ in pending), mine.tolist(), strict=True))
        everyone = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(everyone, mine)
        pairs = [(step - self.rank + r, value) for r, losses in enumerate(everyone)
                 for (step, _), value in zip(pending, losses.tolist(), strict=True)]
        return sorted(p for p in pairs if p[0] < n_steps)

    def sum_grads(self, model: torch.nn.Module) -> None:
        """Sum each parameter's accumulated gradient over the ranks (one all-reduce of them all,
        flattened). A parameter no rank has a gradient for keeps none (AdamW then skips it, as
        in a one-process trial); a rank that sat the last rounds out adds zeros."""
        if self.world == 1:
            return
        params = list(model.parameters())
        held = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
        grads = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params]
        flat = torch.cat([held, *grads])
        dist.all_reduce(flat)
        offset = len(params)
        for p, any_rank in zip(params, flat[:offset].tolist(), strict=True):
            p.grad = flat[offset:offset + p.numel()].view_as(p) if any_rank else None
            offset += p.numel()

    def gather_rng(self, mine: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Ranks 1..N-1's random states (``trainables.state.rng_state``) on rank 0, for its
        checkpoint; empty elsewhere and in a one-process trial."""
        if self.world == 1:
            return []
        everyone: list[Any] = [None] * self.world
        dist.all_gather_object(everyone, mine, group=self.control)
        return everyone[1:] if self.leader else []

    def from_leader(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (a checkpoint's dict, or ``None``) on every rank."""
        if self.world == 1:
            return obj
        box = [obj if self.leader else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def same_start(self, model: torch.nn.Module) -> None:
        """A new trial: every rank takes rank 0's initial weights (whatever it loaded); the
        followers then draw (dropout) from a random stream of their own."""
        if self.world == 1:
            return
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
        if not self.leader:
            torch.manual_seed(torch.initial_seed() + self.rank)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier(group=self.control)


SINGLE = Ranks()


def _join(rank: int, world: int, store: dist.Store, device: torch.device) -> Ranks:
    """Join the trial's process group (NCCL on CUDA, gloo on the CPU) and its gloo control group."""
    if device.type == "cuda":
        torch.cuda.set_device(rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT) if backend == "nccl" else None
    return Ranks(rank, world, control)


@contextmanager
def data_parallel(world: int, device: torch.device, payload: dict[str, Any]) -> Iterator[Ranks]:
    """Rank 0 of a trial on ``world`` processes: starts ranks 1..world-1 (each calls ``payload``'s
    ``entry``, ``"module:function"``, with its ``config``, ``data``, ``plugins`` and its ``Ranks``), joins
    them, and afterwards waits for them to finish, or kills them when the training raised (an
    error that follows a follower's death names it). ``world == 1``: ``SINGLE``, nothing started."""
    if world == 1:
        yield SINGLE
        return
    workdir = Path(tempfile.mkdtemp(prefix="depth-ranks-"))
    store = dist.TCPStore("127.0.0.1", 0, world, is_master=True, timeout=START_TIMEOUT, wait_for_workers=False)
    followers = [_start(rank, world, store.port, payload, workdir) for rank in range(1, world)]
    ok = False
    try:
        _wait_ready(store, followers)
        yield _join(0, world, store, device)
        ok = True
    except Exception as e:  # not SystemExit: Tune stopping the trial ends it as asked
        # A follower's death shows here first as a broken connection; it may take seconds to exit
        # (its traceback, torch's teardown) on a busy machine: 1 s was too short once in CI.
        dead = _exited(followers, wait=DEAD_WAIT_S)
        if dead:
            raise RuntimeError(f"data-parallel trial: {dead} (its traceback is in the trial's log)") from e
        raise
    finally:
        _stop(followers, ok)
        if dist.is_initialized():
            dist.destroy_process_group()
        shutil.rmtree(workdir, ignore_errors=True)


def _start(rank: int, world: int, port: int, payload: dict[str, Any], workdir: Path) -> subprocess.Popen:
    path = workdir / f"rank{rank}.pkl"
    path.write_bytes(pickle.dumps({**payload, "rank": rank, "world": world, "port": port, "parent": os.getpid()}))
    # The trial's import path (Ray's working dir, --plugins' modules) and environment (its GPUs).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.Popen([sys.executable, "-m", "trainables.distributed", str(path)], env=env)


def _wait_ready(store: dist.Store, followers: list[subprocess.Popen]) -> None:
    """Until every follower has imported its code and reached the store: one that dies first (an
    import error, say) ends the wait at once, instead of rank 0 waiting out the group's timeout."""
    keys = [f"ready/{rank}" for rank in range(1, len(followers) + 1)]
    deadline = time.monotonic() + START_TIMEOUT.total_seconds()
    while not store.check(keys):
        if _exited(followers) or time.monotonic() > deadline:
            raise RuntimeError(f"data-parallel trial: ranks 1..{len(followers)} did not all start")
        time.sleep(0.1)


def _exited(followers: list[subprocess.Popen], wait: float = 0.0) -> str:
    """``rank R exited with code C`` for each follower that ended with an error (after waiting up
    to ``wait`` seconds in all for them to end); empty when none did."""
    deadline = time.monotonic() + wait
    failed = []
    for rank, proc in enumerate(followers, start=1):
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.0)) if wait else None
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() not in (None, 0):
            failed.append(f"rank {rank} exited with code {proc.returncode}")
    return "; ".join(failed)


def _stop(followers: list[subprocess.Popen], ok: bool) -> None:
    """After the last epoch the followers exit by themselves; after an error (or a preemption)
    they may wait in a collective that never comes: killed."""
    failed = _exited(followers, wait=STOP_SECONDS) if ok else ""
    for rank, proc in enumerate(followers, start=1):
        if proc.poll() is None:
            if ok:
                log.warning("rank %d did not exit after the last epoch: killed", rank)
            proc.kill()
        proc.wait()
    if failed:
        raise RuntimeError(f"data-parallel trial: {failed} (its traceback is in the trial's log)")


def _die_with_parent() -> None:
    """SIGKILL this process when the thread that started it ends (Linux): a follower never
    outlives its trial, even one SIGKILLed."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: rank 0 still kills it on any error
        pass


def main(path: str) -> None:
    """A follower: rank r of the trial whose rank 0 wrote ``path``."""
    _die_with_parent()
    payload = pickle.loads(Path(path).read_bytes())
    if os.getppid() != payload["parent"]:  # rank 0 died before we could follow it
        sys.exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the preemption notice is rank 0's to handle
    module, _, name = payload["entry"].partition(":")
    follow = getattr(importlib.import_module(module), name)  # named by rank 0 (this module sits below it)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    store = dist.TCPStore("127.0.0.1", payload["port"], payload["world"], is_master=False, timeout=START_TIMEOUT)
    store.set(f"ready/{payload['rank']}", "1")  # started: rank 0 now joins the group (_wait_ready)
    ranks = _join(payload["rank"], payload["world"], store, device)
    try:
        follow(payload["config"], payload["data"], payload["plugins"], ranks)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    # The module's own classes, not copies of them in __main__.
    from trainables.distributed import main as follower

    logging.basicConfig(level=logging.WARNING)
    follower(sys.argv[1])
