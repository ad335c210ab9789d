"""The Tune side of a run: a Tuner (new or restored) for one study of the plan."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grid.experiment.config import RunConfig

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback, TBXLoggerCallback

from trainables.retries import RetriesPreemptions

METRIC_COLUMNS = {"epoch": "epoch", "si_rmse": "val si_rmse", "abs_rel": "abs_rel", "delta1": "delta1",
                  "train_loss": "train loss"}
PARAMETER_COLUMNS = {"arch": "arch", "lam": "lam", "lr": "lr"}


class TrialWritesTensorBoard(TBXLoggerCallback):
    """Stands in for Tune's automatic TensorBoard logger (Tune adds one unless a TBX logger is
    among the callbacks): each trial writes one coherent event file itself (train/*, val/*,
    depth panels, hparams), so no metric shows twice under ray/tune/*."""

    def __init__(self) -> None:
        LoggerCallback.__init__(self)  # not TBX's own: it would import tensorboardX to write nothing

    def log_trial_start(self, trial) -> None:
        pass

    def log_trial_result(self, iteration, trial, result) -> None:
        pass

    def log_trial_end(self, trial, failed: bool = False) -> None:
        pass


def _tune_callbacks(cfg: RunConfig, tune_name: str) -> list:
    """Tune's CSV and JSON loggers (the leaderboard reads result.json), no TensorBoard copy, and
    the ``--log-to`` tracking servers' callbacks (``grid.experiment.tracking``)."""
    from grid.experiment.tracking import tracking_callbacks

    return [CSVLoggerCallback(), JsonLoggerCallback(), TrialWritesTensorBoard(), *tracking_callbacks(cfg, tune_name),
            RetriesPreemptions(cfg.max_failures)]  # preemptions do not use up --max-failures


def progress_reporter(param_space: dict | None = None):
    """A compact trial table (status, arch, lambda, lr, epoch, the metrics that matter) instead
    of Tune's configuration box per trial. Tune takes a reporter only with its legacy output,
    which ``grid.experiment.run`` selects (``RAY_AIR_NEW_OUTPUT=0``) unless the user set it."""
    from ray import tune

    columns = dict(PARAMETER_COLUMNS)
    if "tag" in (param_space or {}):  # a space that names its variants (recipe)
        columns = {"tag": "tag", **columns}
    if isinstance((param_space or {}).get("seed"), dict):  # --seeds K: the seed is a grid dimension
        columns["seed"] = "seed"
    return tune.CLIReporter(metric_columns=METRIC_COLUMNS, parameter_columns=columns,
                            max_report_frequency=30, sort_by_metric=True)


def with_world_size(param_space: dict, gpus: float) -> dict:
    """``--gpus-per-trial N`` > 1: each trial trains data-parallel on its N GPUs, one process per
    GPU (the trial setting ``world_size``, ``trainables.distributed``); a bundle on one node."""
    return {**param_space, "world_size": int(gpus)} if gpus > 1 else param_space


def check_world_size(plan: list[tuple[str, dict]], gpus: float) -> None:
    """Refuse, before anything is written, a plan whose ``accum_steps`` (a value or a grid) is not
    a multiple of ``--gpus-per-trial N`` > 1 (each optimiser step sums one micro-batch per GPU),
    or whose ``world_size`` (``--set``) is not N."""
    if gpus <= 1:
        return
    from grid.experiment.plan import ExperimentError
    from trainables.config import TrialConfig

    n = int(gpus)
    for name, param_space in plan:
        if param_space.get("world_size", n) != n:
            raise ExperimentError(f"--gpus-per-trial {n} and --set world_size={param_space['world_size']} disagree: "
                                  "the GPUs per trial set the world size; leave world_size out")
        value = param_space.get("accum_steps", TrialConfig.accum_steps)  # unset: the trial's default
        values = value.get("grid_search", []) if isinstance(value, dict) else [value]
        bad = [v for v in values if isinstance(v, int) and v % n]
        if bad:
            raise ExperimentError(f"--gpus-per-trial {n}: accum_steps={bad[0]} (experiment {name}) is not a multiple "
                                  f"of {n}: each optimiser step sums one micro-batch per GPU; pass --set "
                                  f"accum_steps=K with K a multiple of {n}, or another --gpus-per-trial")


def make_tuner(trainable, tune_name: str, param_space: dict, search: dict, cfg: RunConfig, storage: str,
               gpus: float, accelerator: str | None = None, cpus: float = 1.0):
    """A new Tuner for the study, or the one in ``storage`` restored (finished trials kept).
    ``accelerator``: the GPU type every trial asks for (a sliver of Ray's ``accelerator_type:X``
    resource, as ``ray.remote(accelerator_type=...)`` asks), so the autoscaler adds only that type."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    from grid.experiment.gpus import trial_bundle

    trainable = tune.with_resources(trainable, trial_bundle(cpus, gpus, accelerator))
    param_space = with_world_size(param_space, gpus)
    path = f"{storage.rstrip('/')}/{tune_name}"
    if tune.Tuner.can_restore(path):
        print(f"Resuming experiment {path} (finished trials are kept, not re-run)")
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=False,
                                  restart_errored=cfg.retry_errored, param_space=param_space)
    if search["algorithm"] == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        algo = ConcurrencyLimiter(OptunaSearch(seed=search["seed"]), max_concurrent=cfg.max_concurrent or 2)
    else:
        # Tune ignores TuneConfig.max_concurrent_trials for this generator (not a Searcher):
        # it limits concurrency itself.
        algo = BasicVariantGenerator(random_state=search["seed"], max_concurrent=cfg.max_concurrent or 0)
    scheduler = None
    if search.get("scheduler") == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", max_t=int(param_space["epochs"]),
                                  grace_period=search.get("grace_period", 1),
                                  reduction_factor=search.get("reduction_factor", 2))
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="si_rmse", mode="min", num_samples=search["num_samples"],
                                    search_alg=algo, scheduler=scheduler,
                                    max_concurrent_trials=cfg.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=tune_name, storage_path=storage, verbose=cfg.verbose,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="si_rmse",
                                                    checkpoint_score_order="min"),
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            sync_config=tune.SyncConfig(sync_artifacts=True),  # TensorBoard events reach remote storage
            callbacks=_tune_callbacks(cfg, tune_name), progress_reporter=progress_reporter(param_space),
        ),
    )
