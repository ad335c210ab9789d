"""Tune's MLflow callback with the trial's best checkpoint as the run's artifact (``--log-to
mlflow``, ``grid.experiment.tracking``). Its own module: importing Ray's callback imports mlflow."""

from __future__ import annotations

import logging

from ray.air.integrations.mlflow import MLflowLoggerCallback

log = logging.getLogger(__name__)
BEST_CHECKPOINT_ARTIFACT = "best_checkpoint"  # the run's artifact folder


def best_checkpoint(trial):
    """The trial's best checkpoint as Tune's checkpoint manager ranks it (si_rmse, min), or None."""
    manager = getattr(getattr(trial, "run_metadata", None), "checkpoint_manager", None)
    best = getattr(manager, "best_checkpoint_result", None)
    return getattr(best, "checkpoint", None)


class MLflowLogger(MLflowLoggerCallback):
    """Params when a trial starts and its result every epoch (Tune's callback), and the trial's
    best checkpoint under ``best_checkpoint/`` when it ends. Not Tune's ``save_artifact``: that
    uploads the driver's copy of the trial folder, which holds logs but no checkpoint."""

    def log_trial_end(self, trial, failed: bool = False) -> None:
        run_id, best = self._trial_runs.get(trial), best_checkpoint(trial)
        if run_id and best is not None:
            from mlflow.tracking import MlflowClient

            try:
                with best.as_directory() as folder:
                    MlflowClient(self.tracking_uri).log_artifacts(run_id, folder, BEST_CHECKPOINT_ARTIFACT)
            except Exception as e:  # noqa: BLE001 - a server refusing an upload must not end the grid
                log.warning("MLflow: the best checkpoint of %s was not uploaded: %s", trial, e)
        super().log_trial_end(trial, failed)
