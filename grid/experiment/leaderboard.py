"""The leaderboard: one row per trial, sorted by validation SI-RMSE, rebuilt from disk.

``depth-grid leaderboard results/<experiment>`` reads the Tune folders named in the
experiment's ``experiment.json`` without starting Ray: trial statuses through Tune's own
``ExperimentAnalysis``, and the project's rules on top of the trial files (``params.json``,
``result.json`` with every attempt's lines, ``error.txt``, the checkpoints' ``metrics.json``):
one row per trial at its best epoch, config errors, cost, eval-set columns. The top-K
ensemble's section is ``grid.experiment.ensemble_table``'s (``ENSEMBLE_FILE`` and
``format_ensemble`` are still importable from here).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from grid.experiment.ensemble_table import ENSEMBLE_FILE as ENSEMBLE_FILE
from grid.experiment.ensemble_table import ensemble_section
from grid.experiment.ensemble_table import format_ensemble as format_ensemble
from grid.experiment.groups import group_key, scores_uri, seeds_section, write_groups
from grid.experiment.storage import Storage
from trainables.io import atomic_write
from trainables.preemption import MID_EPOCH_FILE, RETRIES_FILE

COLUMNS = [
    "trial_id", "arch", "tag", "lam", "lr", "weight_decay", "epochs_done", "epochs", "best_epoch", "si_rmse", "abs_rel",
    "rmse", "delta1", "tta", "train_loss", "params", "weights", "gpu_hours", "accelerator", "cost_usd", "status", "error",
    "checkpoint", "eval_epoch", "train_fraction", "train_images", "seed", "group", "per_image",
]  # then, per --eval-data set NAME: si_rmse@NAME, abs_rel@NAME, delta1@NAME
SHOWN = ["arch", "tag", "lam", "lr", "epochs_done", "best_epoch", "si_rmse", "silog", "abs_rel", "rmse", "delta1", "tta", "train_loss",
         "params", "weights", "gpu_hours", "cost_usd", "status"]  # cost_usd shown as $
SHOWN_WITH_FRACTIONS = ("train_fraction", "train_images")  # shown after lr when some trial trained on a subset
COLUMNS += ["silog", "protocol", "align"]  # BTS's SILog (x100) and how validation scored (trainables.protocols)
COLUMNS += ["failures", "preemptions"]  # the trial's retries: after real failures, after preemptions
COLUMNS += ["infer_ms"]  # ms per image at the input size on the trial's device (trainables.timing)
COLUMNS += ["gpus_per_trial", "world_size"]  # GPUs held (all priced); data-parallel processes trained on
SCORING = ("protocol", "align")  # shown after delta1 when some trial validates under a protocol or aligns
OPTIONAL = ("tag", "tta")  # shown only when some trial has one: a variant's label, flip test-time averaging
EVAL_METRICS = ("si_rmse", "abs_rel", "delta1")  # of each --eval-data set, in the leaderboard


class LeaderboardError(RuntimeError):
    """The experiment folder cannot be read."""


def read_experiment(experiment_dir: Path) -> dict:
    path = Path(experiment_dir) / "experiment.json"
    if not path.is_file():
        raise LeaderboardError(f"{path}: not found; is {experiment_dir} an experiment folder written by depth-grid run?")
    return json.loads(path.read_text())


def trial_results(store: Storage, trial_dir: str) -> list[dict]:
    """Every line of the trial's result.json, each attempt's included."""
    path = f"{trial_dir}/result.json"
    if not store.is_file(path):
        return []
    rows = []
    for line in store.read_text(path).splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a killed process
            continue
    return rows


def _by_epoch(rows: list[dict]) -> list[dict]:
    """One row per epoch: a trial restored from a checkpoint can repeat epochs it had
    reported before it was killed; the last report of each epoch is the one that stands."""
    by_epoch = {r.get("epoch"): r for r in rows if "epoch" in r}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _error_message(store: Storage, trial_dir: str) -> str:
    path = f"{trial_dir}/error.txt"
    if not store.is_file(path):
        return ""
    lines = [ln.strip() for ln in store.read_text(path).splitlines() if ln.strip()]
    causes = [ln for ln in lines if "Error:" in ln or "Exception:" in ln]
    return (causes[-1] if causes else lines[-1])[:300] if lines else "error"


def retry_counts(store: Storage, trial_dir: str) -> dict[str, int]:
    """``failures`` (exceptions in the trial's code) and ``preemptions`` (stopped by SIGTERM, or
    its process or node died) that Tune retried or ended the trial on, as the run recorded them
    (``trainables.retries.RetriesPreemptions``); without that record, every failure in
    ``error.txt`` counts as a failure."""
    path = f"{trial_dir}/{RETRIES_FILE}"
    if store.is_file(path):
        counts = json.loads(store.read_text(path))
        return {"failures": int(counts.get("failures", 0)), "preemptions": int(counts.get("preemptions", 0))}
    errors = f"{trial_dir}/error.txt"
    failures = store.read_text(errors).count("Failure # ") if store.is_file(errors) else 0
    return {"failures": failures, "preemptions": 0}


def _best_checkpoint(store: Storage, trial_dir: str) -> tuple[str, dict]:
    """The checkpoint with the best validation si_rmse, and the metrics saved with it."""
    best, best_metrics, best_score = "", {}, math.inf
    for ckpt in store.listdir(trial_dir):
        if not Path(ckpt).name.startswith("checkpoint_"):
            continue
        if store.is_file(f"{ckpt}/{MID_EPOCH_FILE}"):  # a mid-epoch checkpoint: for resuming, never scored
            continue
        metrics_file = f"{ckpt}/metrics.json"
        if not store.is_file(f"{ckpt}/checkpoint.pt") or not store.is_file(metrics_file):
            continue
        metrics = json.loads(store.read_text(metrics_file))
        score = metrics.get("si_rmse", math.inf)
        if score < best_score:
            best, best_metrics, best_score = store.uri(f"{ckpt}/checkpoint.pt"), metrics, score
    return best, best_metrics


def _status(done: int, epochs: int, tune_status: str | None, error: str) -> str:
    if done >= epochs > 0:
        return "finished"  # also after failures it recovered from (error.txt keeps them)
    if tune_status is not None:
        return tune_status
    return "error" if error else "incomplete"


def _tune_id(trial_dir: str, statuses: dict[str, str]) -> str:
    """The id of a trial with no result yet (interrupted before its first report): Tune names its
    folder ``<trainable>_<id>_<index>_...``; the folder's name when no known id is in it."""
    name = Path(trial_dir).name
    return next((t for t in statuses if f"_{t}_" in name), name)


def trial_row(store: Storage, trial_dir: str, gpus_per_trial: float, statuses: dict[str, str],
              prices: dict[str, float] | None = None,
              train_images: Callable[[dict], int | None] | None = None) -> dict:
    """One trial's row. Every validation metric comes from one epoch: the one with the best
    validation si_rmse, whose checkpoint the row points to (``best_epoch``); the ``--eval-data``
    scores are of the same weights, reported with the last epoch (``eval_epoch``)."""
    from grid.experiment.cost import price_trial

    params = json.loads(store.read_text(f"{trial_dir}/params.json"))
    raw = trial_results(store, trial_dir)
    results = _by_epoch(raw)
    last = results[-1] if results else {}
    checkpoint, best = _best_checkpoint(store, trial_dir)
    if not best and results:  # no checkpoint on disk (yet): the best reported epoch
        best = min(results, key=lambda r: r.get("si_rmse", math.inf))
    trial_id = (raw[-1].get("trial_id") if raw else None) or _tune_id(trial_dir, statuses)
    epochs = int(params.get("epochs", 0))
    done = int(last.get("epoch", 0))
    config_error = next((r["config_error"] for r in raw if r.get("config_error")), "")
    error = f"ConfigError: {config_error}" if config_error else _error_message(store, trial_dir)
    status = "error" if config_error else _status(done, epochs, statuses.get(trial_id), error)
    # Every attempt's time: a retried trial re-runs the epochs after its last checkpoint.
    seconds = sum(float(r.get("time_this_iter_s", 0.0)) for r in raw)
    gpu_hours = round(seconds * gpus_per_trial / 3600, 6)  # 3.6 ms: a tiny test trial is not 0
    accelerator, cost = price_trial(gpu_hours, last.get("device_name"), prices if prices is not None else {})
    scored = next((r for r in reversed(raw) if "eval_epoch" in r), {})
    evals = {k: v for k, v in scored.items() if k.partition("@")[0] in EVAL_METRICS and "@" in k}
    return {
        "trial_id": trial_id, "arch": params.get("arch"), "tag": params.get("tag", ""), "lam": params.get("lam"), "lr": params.get("lr"),
        "weight_decay": params.get("weight_decay"), "epochs_done": done, "epochs": epochs,
        "best_epoch": best.get("epoch"), "si_rmse": best.get("si_rmse"), "abs_rel": best.get("abs_rel"),
        "rmse": best.get("rmse"), "delta1": best.get("delta1"), "silog": best.get("silog"),
        "protocol": params.get("protocol", "none"), "align": params.get("align", "none"), "tta": bool(params.get("tta", False)),
        "train_loss": best.get("train_loss"),
        "params": last.get("params"), "weights": last.get("weights", ""),
        "gpu_hours": gpu_hours, "accelerator": accelerator, "cost_usd": cost, "infer_ms": last.get("infer_ms"),
        "gpus_per_trial": gpus_per_trial, "world_size": int(last.get("world_size", 1)),
        "status": status, "error": error if status == "error" else "", "checkpoint": checkpoint,
        "eval_epoch": scored.get("eval_epoch"), "train_fraction": params.get("train_fraction", 1.0),
        "train_images": train_images(params) if train_images is not None else None,
        "seed": params.get("seed"), "group": group_key(params), "per_image": scores_uri(store, checkpoint),
        **retry_counts(store, trial_dir), **evals,
    }


def train_image_counts(experiment_dir: Path, info: dict) -> Callable[[dict], int | None]:
    """A trial's number of training images from its settings (``train_fraction``, ``seed``): the
    subset ``trainables.subset`` takes inside the trial, of the training side of the experiment's
    split JSON. ``None`` for every trial when the split JSON cannot be read."""
    from trainables.subset import cluster_subset

    named = Path(info.get("split") or "split.json")
    try:
        split = json.loads((named if named.is_absolute() else Path(experiment_dir) / named).read_text())
        clusters = [split["cluster_of"][n] for n in split["train"]]
    except (OSError, ValueError, KeyError, TypeError):
        return lambda params: None

    @functools.cache
    def count(fraction: float, seed: int) -> int | None:
        try:
            return len(cluster_subset(clusters, fraction, seed))
        except ValueError:  # a fraction out of range: the trial's config error says so
            return None

    return lambda params: count(float(params.get("train_fraction", 1.0)), int(params.get("seed", 0)))


TUNE_STATUS = {"TERMINATED": "stopped", "ERROR": "error", "RUNNING": "incomplete", "PENDING": "incomplete",
               "PAUSED": "incomplete"}


def tune_statuses(store: Storage) -> dict[str, str]:
    """Trial statuses from Tune's newest experiment state in storage, read by Tune's own
    ``ExperimentAnalysis`` and mapped to ours ("finished" is decided from the epochs done). An
    experiment with no state saved yet (or one Tune cannot read) has none."""
    import logging

    from ray.tune import ExperimentAnalysis

    # It also loads every trial's results, and warns about a line cut short by a killed
    # process; the leaderboard reads those itself (``trial_results``) and skips such a line.
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        trials = ExperimentAnalysis(store.root, storage_filesystem=store.fs).trials
    except (ValueError, KeyError, TypeError, OSError):  # no snapshot yet, or not one Tune can read
        return {}
    finally:
        quiet.setLevel(level)
    return {t.trial_id: TUNE_STATUS.get(t.status, "incomplete") for t in trials}


def experiment_trials(info: dict) -> Iterator[tuple[Storage, list[str]]]:
    """Each started Tune run of the experiment (``experiment.json``'s ``tune_dirs``): its storage
    and its trial folders (those with a ``params.json``)."""
    for tune_dir in info.get("tune_dirs", []):
        store = Storage(tune_dir)
        if store.is_dir(store.root):  # else: not started yet
            yield store, [d for d in store.listdir(store.root) if store.is_file(f"{d}/params.json")]


def build_leaderboard(experiment_dir: Path, statuses: dict[str, str] | None = None,
                      prices: str | Path | None = None) -> pd.DataFrame:
    """One row per trial folder of the experiment's Tune runs, best SI-RMSE first; ``prices``: a
    price table file replacing the experiment's (``grid.cost``). ``statuses`` (trial id ->
    status) overrides Tune's for trials that did not finish: ``depth-grid run`` marks those a
    Ctrl-C stopped ``interrupted`` (rebuilt later from storage alone, they read ``incomplete``)."""
    from grid.experiment.cost import experiment_prices

    info = read_experiment(experiment_dir)
    table = experiment_prices(info, prices)
    counts = train_image_counts(experiment_dir, info)
    statuses = statuses or {}
    rows = []
    for store, trial_dirs in experiment_trials(info):
        known = {**tune_statuses(store), **statuses}
        rows += [trial_row(store, d, float(info.get("gpus_per_trial", 0)), known, table, counts) for d in trial_dirs]
    evals = [k for r in rows for k in r if "@" in k]
    df = pd.DataFrame(rows, columns=COLUMNS + sorted(set(evals), key=evals.index))
    return df.sort_values(["si_rmse", "arch"], na_position="last", kind="stable").reset_index(drop=True)


def write_leaderboard(df: pd.DataFrame, experiment_dir: Path) -> tuple[Path, Path]:
    """Write ``leaderboard.csv`` and ``leaderboard.md`` atomically."""
    experiment_dir = Path(experiment_dir)
    csv_path = experiment_dir / "leaderboard.csv"
    with atomic_write(csv_path) as fh:
        df.to_csv(fh, index=False)
    write_groups(df, experiment_dir)  # leaderboard_groups.csv, when some row ran several seeds
    return csv_path, write_markdown(df, experiment_dir)


def write_markdown(df: pd.DataFrame, experiment_dir: Path) -> Path:
    """``leaderboard.md``: the table, and the top-K ensemble's scores when they were evaluated."""
    from grid.experiment.cost import cost_line

    md_path = Path(experiment_dir) / "leaderboard.md"
    with atomic_write(md_path) as fh:
        fh.write(f"# Leaderboard: {Path(experiment_dir).name}\n\nValidation metrics of each trial's best epoch "
                 "(`best_epoch`, the checkpoint the row points to); lower si_rmse is better.\n\n" + format_table(df)
                 + "\n\n" + cost_line(df) + "\n" + seeds_section(df) + ensemble_section(experiment_dir) + audit_section(experiment_dir))
    return md_path


def format_table(df: pd.DataFrame) -> str:
    """A markdown table of the columns a reader compares (``tag`` and ``tta`` when used)."""
    evals = [c for c in df.columns if c.startswith("si_rmse@")]  # per --eval-data set
    columns = SHOWN[:SHOWN.index("train_loss")] + evals + SHOWN[SHOWN.index("train_loss"):]
    if "train_fraction" in df and (pd.to_numeric(df.train_fraction, errors="coerce").fillna(1.0) != 1.0).any():
        at = columns.index("lr") + 1 if "lr" in columns else 1
        columns[at:at] = SHOWN_WITH_FRACTIONS
    if "seed" in df and df.seed.nunique() > 1:  # --seeds K: which seed each row ran
        columns.insert(columns.index("lr") + 1 if "lr" in columns else 1, "seed")
    if any(c in df and (df[c].fillna("none") != "none").any() for c in SCORING):
        at = columns.index("delta1") + 1
        columns[at:at] = SCORING
    if "world_size" in df and (pd.to_numeric(df.world_size, errors="coerce").fillna(1) > 1).any():
        columns.insert(columns.index("gpu_hours"), "world_size")  # data-parallel trials: on how many GPUs
    columns = [c for c in columns if c not in OPTIONAL or (c in df and df[c].fillna("").astype(bool).any())]
    shown = df[[c for c in columns if c in df]].copy()
    if "silog" in shown:  # x100: two decimals, as papers print it
        shown["silog"] = shown["silog"].map(lambda v: f"{v:.2f}" if isinstance(v, (int, float)) and v == v else "")
    for col in ("si_rmse", "abs_rel", "rmse", "delta1", "train_loss", *evals):
        shown[col] = shown[col].map(lambda v: f"{v:.4f}" if isinstance(v, (int, float)) and v == v else "")
    if "cost_usd" in shown:  # unknown (an unpriced GPU) is not free
        from grid.experiment.cost import money

        shown["cost_usd"] = [money(v) if v == v else "unknown" for v in pd.to_numeric(shown.cost_usd)]
    columns = list(shown.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in shown.iterrows():
        lines.append("| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |")
    errors = df[df.status == "error"]
    for _, row in errors.iterrows():
        lines.append(f"\n- `{row.trial_id}` ({row.arch}) failed: {row.error}")
    return "\n".join(lines)


def audit_section(experiment_dir: Path) -> str:
    """The warning lines of the run's leakage audit (``experiment.json``'s ``leakage_audit``), one
    per ``--eval-data`` set with near-duplicates of training images; empty when none has any."""
    from grid.split.audit import warning_lines

    if not (Path(experiment_dir) / "experiment.json").is_file():
        return ""
    recorded = read_experiment(experiment_dir).get("leakage_audit") or {}
    lines = warning_lines(recorded.get("sets") or {}, recorded.get("threshold", 0.9))
    return "".join(f"\n**{line}** (`experiment.json`, `leakage_audit`)\n" for line in lines)


def read_leaderboard(experiment_dir: Path) -> pd.DataFrame:
    path = Path(experiment_dir) / "leaderboard.csv"
    if not path.is_file():
        raise LeaderboardError(f"{path}: no leaderboard yet; run `depth-grid leaderboard {experiment_dir}`")
    return pd.read_csv(path)
