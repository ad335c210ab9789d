"""``--log-to``: tracking servers through Tune's own logger callbacks.

TensorBoard is the default and always on: each trial writes its own event file
(``trainables.trainable``). ``mlflow`` adds Tune's ``MLflowLoggerCallback`` and ``wandb`` its
``WandbLoggerCallback``: every trial's settings as params, every epoch's result as metrics, and
the best checkpoint as an artifact (MLflow: ``best_checkpoint/`` of the run, once the trial
ends; W&B: each checkpoint as it is reported, the best among them). Both callbacks run on the
driver, so the server must be reachable from the machine that runs ``depth-grid run``.
``check_tracking`` refuses, before Ray starts, a missing package or a server that does not answer.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from grid.experiment.plan import ExperimentError

if TYPE_CHECKING:
    from grid.experiment.config import RunConfig

SERVER_TIMEOUT_S = 3.0


def mlflow_uri(cfg: RunConfig) -> str | None:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``."""
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def check_tracking(cfg: RunConfig) -> None:
    """Each ``--log-to`` server's package is installed (its extra named), MLflow has a tracking
    URI, and an http(s) one answers a TCP connect; one ``ExperimentError`` line otherwise."""
    for name in cfg.log_to:
        if name != "tensorboard" and importlib.util.find_spec(name) is None:
            raise ExperimentError(f"--log-to {name}: the {name} package is not installed; "
                                  f"install the extra: pip install 'depth-grid[{name}]'")
    if cfg.tracking_uri and "mlflow" not in cfg.log_to:
        raise ExperimentError("--tracking-uri is MLflow's tracking server: add --log-to mlflow")
    if "mlflow" in cfg.log_to:
        uri = mlflow_uri(cfg)
        if not uri:
            raise ExperimentError("--log-to mlflow needs a tracking server: --tracking-uri URI or "
                                  "MLFLOW_TRACKING_URI (e.g. http://127.0.0.1:5000)")
        check_server(uri)


def check_server(uri: str, timeout_s: float = SERVER_TIMEOUT_S) -> None:
    """An ``http(s)://`` tracking server answers a TCP connect (other schemes are local stores)."""
    url = urlparse(uri)
    if url.scheme not in ("http", "https") or not url.hostname:
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as e:
        raise ExperimentError(f"--tracking-uri {uri}: no MLflow server answers at {url.hostname}:{port} "
                              f"({e.strerror or type(e).__name__}); is `mlflow server` running?") from None


def tracking_callbacks(cfg: RunConfig, tune_name: str) -> list:
    """Tune's logger callbacks for ``--log-to mlflow`` / ``wandb`` (none for TensorBoard alone)."""
    callbacks = []
    if "mlflow" in cfg.log_to:
        # imports mlflow: only when asked for
        from grid.experiment.mlflow_logger import MLflowLogger

        callbacks.append(MLflowLogger(tracking_uri=mlflow_uri(cfg), experiment_name=cfg.experiment_name,
                                      tags={"depth_grid.study": tune_name}))
    if "wandb" in cfg.log_to:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # The trial's settings go in as the W&B run's config; each checkpoint as an artifact.
        callbacks.append(WandbLoggerCallback(project=cfg.experiment_name, group=tune_name, upload_checkpoints=True))
    return callbacks
