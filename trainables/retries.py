"""Retries that tell a preemption from a bug: the driver's side of ``trainables.preemption``.

Tune counts every failure against ``FailureConfig(max_failures)``, and decides whether to retry
a failed trial before any callback can see the error. So ``RetriesPreemptions`` keeps Tune one
retry ahead (each trial's own ``max_failures`` is its failures so far plus one), tells each
failure apart once it happened (``is_preemption``) and counts real failures and preemptions
itself, in the trial's ``retries.json`` in storage (which the leaderboard reads too). When the
trial has used up ``--max-failures`` (or the generous preemption cap), it records why: the next
attempt reads that before it builds anything and raises ``RetriesExhausted``, and Tune, left no
retry this time, ends the trial as an error (docs/DESIGN.md, "Retries").

A Tune callback, so it lives apart from the trial's light module (``trainables.preemption``,
from which the leaderboard reads the file names without importing Ray).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from ray import tune
from ray.exceptions import LocalRayletDiedError, NodeDiedError, RayActorError, WorkerCrashedError

from trainables.preemption import RETRIES_FILE, TrialPreempted

log = logging.getLogger(__name__)

PREEMPTION_RETRIES = 20  # the separate, generous cap on one trial's retries after preemptions


class RetriesExhausted(RuntimeError):
    """Raised by an attempt the driver gave up on: its failures exceeded ``--max-failures``."""


def is_preemption(error: BaseException | None) -> bool:
    """A failure that is not the trial's code: it stopped on a preemption notice
    (``TrialPreempted``), or its actor's process or node died (Ray's ``RayActorError``: a node
    reclaimed or lost, a process killed). An exception the trial's code raised is not."""
    died = (RayActorError, NodeDiedError, WorkerCrashedError, LocalRayletDiedError)
    if error is None:
        return False
    for e in (error, getattr(error, "cause", None)):
        if isinstance(e, died):  # unless the actor never started: its setup raised (a bug, say a plugin)
            return not (isinstance(e, RayActorError) and e.actor_init_failed)
    return TrialPreempted.__name__ in f"{type(error).__name__}: {error}"


def _cause(error: BaseException | None) -> str:
    """The line of an error's text that names it (``InjectedFault: injected fault at ...``)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    causes = [ln for ln in lines if "Error:" in ln or "Exception:" in ln or "Fault:" in ln]
    return (causes[-1] if causes else lines[-1] if lines else type(error).__name__)[:300]


class RetriesPreemptions(tune.Callback):
    """Retries preemptions without using up ``max_failures`` (module docstring); at most
    ``max_preemptions`` of them per trial. ``max_failures`` -1: real failures retry forever."""

    def __init__(self, max_failures: int, max_preemptions: int = PREEMPTION_RETRIES) -> None:
        self.max_failures, self.max_preemptions = max_failures, max_preemptions
        self.counts: dict[str, dict[str, Any]] = {}

    def _counts(self, trial: Any) -> dict[str, Any]:
        if trial.trial_id not in self.counts:  # a resumed experiment: the counts so far, from storage
            self.counts[trial.trial_id] = {"failures": 0, "preemptions": 0, **_read(trial)}
        return self.counts[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._set_limit(trial, self._counts(trial))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial)

    def _record(self, trial: Any) -> None:
        counts = self._counts(trial)
        error = _last_error(trial)
        if isinstance(error, RetriesExhausted) or RetriesExhausted.__name__ in str(error):
            return  # the attempt that ends a trial given up on: counted already
        if is_preemption(error):
            counts["preemptions"] += 1
            log.warning("trial %s was preempted (%d of at most %d retried): it resumes from its last "
                        "checkpoint without using up --max-failures", trial.trial_id, counts["preemptions"],
                        self.max_preemptions)
        else:
            counts["failures"] += 1
            counts["last_error"] = _cause(error)
        if 0 <= self.max_failures < counts["failures"]:
            counts["give_up"] = (f"gave up after {counts['failures']} failure(s) (--max-failures "
                                 f"{self.max_failures}); the last: {counts.get('last_error', '')}")
        elif counts["preemptions"] > self.max_preemptions:
            counts["give_up"] = f"gave up after {counts['preemptions']} preemptions (at most {self.max_preemptions})"
        self._set_limit(trial, counts)
        _write(trial, counts)

    def _set_limit(self, trial: Any, counts: dict[str, Any]) -> None:
        """One more failure of either kind is retried, unless the trial was given up on."""
        if self.max_failures >= 0 or "give_up" in counts:
            trial.max_failures = trial.run_metadata.num_failures + (0 if "give_up" in counts else 1)


def check_retries() -> None:
    """In the trial, before anything is built: raise ``RetriesExhausted`` when the driver gave
    up on this trial (``retries.json`` in its storage folder). Outside Tune, nothing to check."""
    try:
        storage = tune.get_context().get_storage()
        fs, root = storage.storage_filesystem, storage.trial_fs_path
    except Exception:  # a direct call, outside a Tune trial
        return
    give_up = _read_fs(fs, f"{root}/{RETRIES_FILE}").get("give_up")
    if give_up:
        raise RetriesExhausted(give_up)


def _last_error(trial: Any) -> BaseException | None:
    """The exception of the trial's latest failure, as Tune pickled it (``None`` if it did not)."""
    path = trial.pickled_error_file
    if not path or not os.path.isfile(path):
        return None
    import cloudpickle

    try:
        with open(path, "rb") as fh:
            return cloudpickle.load(fh)
    except Exception:  # an exception class that does not unpickle here: not ours, so not a notice
        return None


def _read_fs(fs: Any, path: str) -> dict[str, Any]:
    try:
        with fs.open_input_stream(path) as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):  # none yet
        return {}


def _read(trial: Any) -> dict[str, Any]:
    return _read_fs(trial.storage.storage_filesystem, f"{trial.path}/{RETRIES_FILE}")


def _write(trial: Any, counts: dict[str, Any]) -> None:
    """``retries.json`` in the trial's storage folder, where the next attempt and the leaderboard read it."""
    fs = trial.storage.storage_filesystem
    fs.create_dir(trial.path, recursive=True)
    with fs.open_output_stream(f"{trial.path}/{RETRIES_FILE}") as out:
        out.write(json.dumps(counts, indent=2).encode())
