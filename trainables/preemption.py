"""SIGTERM as a preemption notice: the trial checkpoints at its next step and stops.

Ray (stopping a worker) and the clouds (a Spot or preemptible VM being reclaimed: GCE gives
30 s, EC2 two minutes) send SIGTERM before they kill. While a trial trains, the handler here only
raises its ``Notice``; the trainable then writes a mid-epoch checkpoint after the step in flight
and raises ``TrialPreempted``, and Tune retries the trial from that checkpoint
(``docs/cluster.md``, "Preemption").

Python lets only the main thread install a signal handler, and Tune runs a function trainable in
a thread of its own. ``train_depth`` carries ``InstallsSigtermHandler`` as a Tune mixin
(``__mixins__``, which ``tune.with_parameters`` keeps): Tune's trainable class then installs the
handler in its ``setup``, on the actor's main thread. A SIGTERM with no trial listening (an idle
actor kept for reuse), a second SIGTERM, or one that arrives after the last training step, gets
the handler that was there before (Ray's: the worker exits).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)
MID_EPOCH_FILE = "mid_epoch.json"  # marks a mid-epoch checkpoint (in place of metrics.json): never scored
RETRIES_FILE = "retries.json"  # in each trial's folder: its failures and preemptions (trainables.retries)


class TrialPreempted(RuntimeError):
    """A trial stopped after its preemption checkpoint; Tune retries it from there."""


class Notice:
    """One trial's preemption notice: ``requested`` once SIGTERM arrived while it listened;
    ``handled`` once its checkpoint is written and it is stopping."""

    def __init__(self) -> None:
        self._requested = threading.Event()
        self.handled = False

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def request(self) -> None:
        self._requested.set()


_listening: list[Notice] = []  # the trials training in this process now
_previous: Any = signal.SIG_DFL  # the handler ours replaced


def _on_sigterm(signum: int, frame: Any) -> None:
    waiting = [n for n in _listening if not n.requested]
    if waiting:
        log.warning("SIGTERM: the trial writes a checkpoint after its current step, then stops")
        for n in waiting:
            n.request()
        return
    _pass_on(signum, frame)


def _pass_on(signum: int, frame: Any) -> None:
    """What the process did on SIGTERM before ours: the previous handler, or the default."""
    if callable(_previous):
        _previous(signum, frame)
    elif _previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install() -> bool:
    """Install the SIGTERM handler (once per process); ``False`` off the main thread, where
    Python does not allow it (a ``Notice`` then never fires: SIGTERM acts as before)."""
    global _previous
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous = current
        signal.signal(signal.SIGTERM, _on_sigterm)
    return True


@contextmanager
def listening(cloud: str = "none") -> Iterator[Notice]:
    """The notice of the trial that trains inside: raised by a SIGTERM that arrives meanwhile,
    or by the ``cloud``'s preemption notice (``watch_metadata``). A SIGTERM its training never
    took (it came after the last step) is passed on at the end."""
    install()  # a direct call on the main thread (outside Tune); in Tune, setup did it
    notice = Notice()
    _listening.append(notice)
    stop = threading.Event()
    if cloud != "none":
        threading.Thread(target=watch_metadata, args=(cloud, notice, stop), daemon=True,
                         name="preemption-notice").start()
    try:
        yield notice
    finally:
        stop.set()
        _listening.remove(notice)
        if notice.requested and not notice.handled:
            os.kill(os.getpid(), signal.SIGTERM)  # now with no listener: the previous handler acts


class InstallsSigtermHandler:
    """A Tune trainable mixin: installs the handler when the trial's actor sets up (on its main
    thread), before Tune starts the training function in its own thread."""

    def setup(self, config: dict, *args: Any, **kwargs: Any) -> None:
        install()
        super().setup(config, *args, **kwargs)


# ---- the cloud's own notice (optional: --set preemption_notice=gce|ec2) ----------------------------

POLL_SECONDS = 5.0
# The metadata servers (DEPTH_GRID_METADATA_URL replaces the host, for tests). GCE: "TRUE" once the
# VM is being preempted (30 s before it stops). EC2: 404 until a Spot interruption is scheduled
# (two minutes ahead), then 200 with its action; IMDSv2 first asks for a session token.
GCE_URL = "http://metadata.google.internal/computeMetadata/v1/instance/preempted"
EC2_URL = "http://169.254.169.254/latest/meta-data/spot/instance-action"
EC2_TOKEN_URL = "http://169.254.169.254/latest/api/token"


def _url(url: str) -> str:
    base = os.environ.get("DEPTH_GRID_METADATA_URL")
    return f"{base.rstrip('/')}/{url.split('/', 3)[3]}" if base else url


def preempted_now(cloud: str) -> bool:
    """One look at the ``cloud``'s metadata server: is this VM being preempted? Unreachable or
    unexpected answers read as no."""
    import urllib.error
    import urllib.request

    try:
        if cloud == "gce":
            request = urllib.request.Request(_url(GCE_URL), headers={"Metadata-Flavor": "Google"})
            with urllib.request.urlopen(request, timeout=2) as answer:
                return answer.read().decode().strip().upper() == "TRUE"
        token_request = urllib.request.Request(_url(EC2_TOKEN_URL), method="PUT",
                                               headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
        with urllib.request.urlopen(token_request, timeout=2) as answer:
            token = answer.read().decode()
        request = urllib.request.Request(_url(EC2_URL), headers={"X-aws-ec2-metadata-token": token})
        with urllib.request.urlopen(request, timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError, ValueError):  # 404: nothing scheduled; or no server
        return False


def watch_metadata(cloud: str, notice: Notice, stop: threading.Event, every: float = POLL_SECONDS) -> None:
    """Poll the ``cloud``'s preemption notice every ``every`` seconds until ``stop``; raise
    ``notice`` when it comes (the trial then checkpoints as on SIGTERM, with GCE's 30 s or EC2's
    two minutes to do it)."""
    while not stop.wait(every):
        if preempted_now(cloud):
            log.warning("%s preemption notice: the trial writes a checkpoint after its current step, then stops",
                        cloud)
            notice.request()
            return
