"""Pictures of an experiment, written under ``<experiment>/figures/``.

    depth-grid figures --experiment results/grid1 --n 4

- ``comparison.png``: validation images as rows; RGB | target | the best trial of each
  architecture (like the paper's Figures 3 and 5), one colour scale per row.
- ``leaderboard.png``: best validation si_rmse per architecture (dots: every trial), with the
  paper's and the competition baselines' Kaggle test-set scores as reference lines.
- ``clusters.png``: examples of the split's near-duplicate clusters (what the split keeps
  together on one side).
- ``audit_pairs.png`` (only when the run's leakage audit found near-duplicates): the closest
  (evaluation image, training image) pairs, one row each (``grid.split.audit``).
- ``data_efficiency.png`` (only when the trials trained on more than one ``train_fraction``):
  validation si_rmse against the number of training images, per architecture, with the seeds'
  spread.
- ``pareto.png`` (when the rows carry a cost or an inference time): si_rmse against cost and
  against inference time per image, every finished trial a dot, the Pareto front a line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # object API: no pyplot global state, renders with Agg
from matplotlib.ticker import NullLocator

from grid.experiment.leaderboard import LeaderboardError
from grid.experiment.record import Experiment
from grid.inference.checkpoints import CheckpointError, input_size, load_checkpoint_model
from grid.inference.outputs import Reads, check_outputs, remember
from grid.inference.predict import CMAP, default_device, predict_items
from trainables.data import (
    VALID_MIN,
    DataError,
    DatasetSpec,
    Item,
    index_dataset,
    load_depth,
    load_rgb,
)
from trainables.io import atomic_write

log = logging.getLogger(__name__)

# Kaggle (competition test set) scores; not comparable to our validation-split numbers.
PAPER_KAGGLE = {"ResNet-UNet": 0.161, "Mask2Former": 0.133, "SegFormer-b4": 0.140,
                "SegFormer-b5": 0.126}
BASELINES = {"competition baseline 1": 0.31972, "competition baseline 2": 0.14660}
FIGURES = ("comparison.png", "leaderboard.png", "clusters.png")  # under <experiment>/figures/
OPTIONAL_FIGURES = ("audit_pairs.png", "data_efficiency.png", "pareto.png")  # drawn when the experiment has what they show


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return path


def best_per_arch(df: pd.DataFrame, max_models: int = 6) -> pd.DataFrame:
    """The best trial (lowest si_rmse, with a checkpoint) of each architecture, best first."""
    ok = df[df.si_rmse.notna() & df.checkpoint.notna() & (df.checkpoint.astype(str) != "")]
    ok = ok[ok.status.astype(str) != "error"] if "status" in ok else ok
    return ok.sort_values("si_rmse", kind="stable").drop_duplicates("arch").head(max_models)


def _pick(names: list, n: int) -> list:
    """``n`` names spread evenly over the list (deterministic, covers more scenes than the head)."""
    if len(names) <= n:
        return list(names)
    return [names[int(i)] for i in np.linspace(0, len(names) - 1, n).round()]


def comparison_figure(experiment: Experiment, *, n: int = 4, max_models: int = 6,
                      device: str | None = None) -> Path:
    """RGB | target | each architecture's best prediction, for ``n`` validation images."""
    from trainables.metrics import si_rmse

    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    spec = experiment.spec
    items: list[Item] = _pick(experiment.validation_items(), n)
    rgbs = [load_rgb(it, spec) for it in items]
    targets = [load_depth(it, spec) for it in items]

    device = device or default_device()
    columns: list[tuple[str, list[np.ndarray]]] = []
    for row in best_per_arch(experiment.saved_leaderboard(), max_models).itertuples():
        try:
            model, ck = load_checkpoint_model(row.checkpoint, device)
        except CheckpointError as e:  # a deleted or broken trial should not hide the others
            log.warning("skipping %s: %s", row.arch, e)
            continue
        preds: list[np.ndarray] = [np.empty(0)] * len(items)
        for i, depth in predict_items(model, items, spec, image_size=input_size(ck, None, experiment),
                                      device=device, progress=False):
            preds[i] = depth
        columns.append((f"{row.arch}\nval si_rmse {row.si_rmse:.3f}", preds))
    if not columns:
        raise CheckpointError(f"{experiment}: no usable checkpoint in leaderboard.csv")

    ncols = 2 + len(columns)
    h, w = targets[0].shape
    cell = 2.2
    fig = Figure(figsize=(cell * ncols + 0.8, cell * h / w * len(items) + 0.6), layout="constrained")
    axes = fig.subplots(len(items), ncols, squeeze=False)
    for r, (item, rgb, target) in enumerate(zip(items, rgbs, targets, strict=True)):
        valid = target > VALID_MIN
        # One scale per row, from the target and all predictions, so columns compare directly.
        pool = np.concatenate([target[valid]] + [p[1][r].ravel() for p in columns])
        vmin, vmax = np.percentile(pool, [1, 99]) if pool.size else (0.0, 1.0)
        axes[r, 0].imshow(rgb)
        axes[r, 0].set_ylabel(Path(item.name).stem, fontsize=7)
        im = axes[r, 1].imshow(np.ma.masked_where(~valid, target), cmap=CMAP, vmin=vmin, vmax=vmax)
        for c, (_, preds) in enumerate(columns, start=2):
            axes[r, c].imshow(preds[r], cmap=CMAP, vmin=vmin, vmax=vmax)
            if valid.any():
                axes[r, c].set_xlabel(f"si_rmse {si_rmse(preds[r], target):.3f}", fontsize=7)
        fig.colorbar(im, ax=axes[r, :].tolist(), fraction=0.02, pad=0.01).set_label("m", fontsize=7)
    for c, title in enumerate(["RGB", "target"] + [t for t, _ in columns]):
        axes[0, c].set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{experiment.name}: validation images, best trial per "
                 "architecture", fontsize=9)
    return save_figure(fig, experiment / "figures" / "comparison.png")


def leaderboard_figure(experiment: Experiment) -> Path:
    """Bars: best validation si_rmse per architecture; lines: Kaggle test-set reference scores."""
    df = experiment.saved_leaderboard()
    df = df[df.si_rmse.notna()]
    best = df.groupby("arch").si_rmse.min().sort_values()
    fig = Figure(figsize=(max(6.0, 1.0 + 0.9 * len(best)) + 3.2, 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(best))
    ax.bar(x, best.values, color="#4c72b0", width=0.6, label="best trial (validation)")
    rng = np.random.default_rng(0)  # jitter only, so the dots do not overlap
    for i, arch in enumerate(best.index):
        vals = df.si_rmse[df.arch == arch].to_numpy()
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(vals)), vals, s=10, color="black", zorder=3,
                   label="every trial (validation)" if i == 0 else None)
        ax.annotate(f"{best[arch]:.3f}", (i, best[arch]), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, best.index, rotation=30, ha="right")
    colours = iter(["#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"])
    for name, score in PAPER_KAGGLE.items():
        ax.axhline(score, ls=":", lw=1.4, color=next(colours), label=f"paper {name}: {score:.3f}")
    for (name, score), style in zip(BASELINES.items(), ["--", "-."], strict=True):
        ax.axhline(score, ls=style, lw=1.2, color="0.3", label=f"{name}: {score:.5f}")
    if best.empty:
        ax.text(0.5, 0.5, "no trial has a validation score yet", transform=ax.transAxes,
                ha="center", color="0.4")
    ax.set_ylabel("si_rmse (lower is better)")
    ax.set_title(f"{experiment.path.name}: best validation si_rmse per architecture", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
              title="Lines: Kaggle test-set scores,\nnot comparable to our\nvalidation numbers",
              title_fontsize=7)
    return save_figure(fig, experiment / "figures" / "leaderboard.png")


def cluster_figure(experiment: Experiment, *, clusters: int = 6, per_cluster: int = 4) -> Path:
    """The largest clusters of the split, a few RGB examples each (``grid.split.report`` draws it)."""
    # imported here: grid.split loads the embedding model's library, which the other figures do not need
    from grid.split.report import cluster_figure as draw_clusters

    spec, split = experiment.spec, experiment.split
    cluster_of = split.cluster_of
    items = [it for it in index_dataset(spec) if it.name in cluster_of]
    if not items:
        raise DataError(f"{experiment}: the split JSON has no cluster_of entries for this data")
    return draw_clusters(experiment / "figures" / "clusters.png", items, spec, cluster_of,
                         set(split.val), clusters=clusters, per_cluster=per_cluster)


def pairs_figure(path: Path, found: list[tuple[str, DatasetSpec, DatasetSpec, list]], *,
                 max_pairs: int = 8) -> Path:
    """The closest near-duplicate pairs of a leakage audit, one row each: evaluation image |
    training image. ``found``: ``(set name, its spec, the training spec, the audit's pairs)``
    per set; the ``max_pairs`` most similar pairs over all sets are drawn."""
    rows = sorted(((cos, name, e, t, es, ts) for name, es, ts, pairs in found for e, t, cos in pairs),
                  key=lambda r: -r[0])[:max_pairs]
    if not rows:
        raise DataError("the leakage audit found no near-duplicates: no pairs to draw")
    items: dict[int, dict[str, Item]] = {}

    def item(spec: DatasetSpec, name: str) -> Item:
        if id(spec) not in items:
            items[id(spec)] = {it.name: it for it in index_dataset(spec, require_depth=False)}
        if name not in items[id(spec)]:
            raise DataError(f"{spec.list_path}: lists no {name!r} (an image of the audit's pairs)")
        return items[id(spec)][name]

    fig = Figure(figsize=(5.2, 2.1 * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for r, (cos, name, e, t, es, ts) in enumerate(rows):
        for c, (spec, label, title) in enumerate(((es, e, f"{name}: {e}"), (ts, t, f"train: {t}"))):
            axes[r, c].imshow(load_rgb(item(spec, label), spec))
            axes[r, c].set_title(title, fontsize=7)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(f"cosine {cos:.4f}", fontsize=7)
    fig.suptitle("closest evaluation/training pairs (leakage audit)", fontsize=9)
    return save_figure(fig, Path(path))


def audit_figure(experiment: Experiment, *, max_pairs: int = 8) -> Path | None:
    """``pairs_figure`` of the run's leakage audit (``experiment.json``'s ``leakage_audit``);
    ``None`` when there was no audit or it found nothing."""
    recorded = experiment.record.get("leakage_audit") or {}
    sets = recorded.get("sets") or {}
    if not any(found.get("near_duplicates") for found in sets.values()):
        return None
    specs = recorded.get("data") or {}
    found = [(name, _spec(specs[name]), experiment.spec, sets[name]["pairs"]) for name in sets
             if sets[name].get("near_duplicates") and name in specs]
    return pairs_figure(experiment / "figures" / "audit_pairs.png", found, max_pairs=max_pairs)


def _spec(record: dict) -> DatasetSpec:
    """A dataset spec from its record (``grid.experiment.prepare.spec_record``)."""
    crop = record.get("crop")
    return DatasetSpec(root=Path(record["root"]), format=record.get("format", "cil"),
                       list_file=record.get("list_file"), depth_scale=record.get("depth_scale", 1.0),
                       crop=tuple(crop) if isinstance(crop, list) else crop)


def efficiency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and ``train_fraction``: the mean training images and the validation
    si_rmse over the rows (the seeds): ``mean``, ``std`` (NaN for one seed), ``lo``, ``hi``, ``n``."""
    ok = df[df.si_rmse.notna() & df.train_images.notna()]
    ok = ok[ok.status.astype(str) != "error"] if "status" in ok else ok
    return (ok.groupby(["arch", "train_fraction"])
            .agg(images=("train_images", "mean"), mean=("si_rmse", "mean"), std=("si_rmse", "std"),
                 lo=("si_rmse", "min"), hi=("si_rmse", "max"), n=("si_rmse", "size"))
            .reset_index().sort_values(["arch", "images"], kind="stable"))


def data_efficiency_figure(experiment: Experiment) -> Path | None:
    """Validation si_rmse against the number of training images, one line per architecture
    (the mean over seeds; the band spans the seeds' lowest to highest, the dots are the seeds).
    ``None`` when the trials did not train on more than one ``train_fraction``."""
    df = experiment.saved_leaderboard()
    if "train_images" not in df or "train_fraction" not in df or df.train_fraction.nunique() < 2:
        return None
    table = efficiency_table(df)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for arch, g in table.groupby("arch", sort=True):
        (line,) = ax.plot(g.images, g["mean"], marker="o", label=f"{arch}")
        if (g.n > 1).any():
            ax.fill_between(g.images, g.lo, g.hi, color=line.get_color(), alpha=0.2, lw=0)
        rows = df[(df.arch == arch) & df.si_rmse.notna() & df.train_images.notna()]
        ax.scatter(rows.train_images, rows.si_rmse, s=9, color=line.get_color(), zorder=3)
    ax.set_xscale("log")
    ticks = table.groupby("train_fraction").images.mean()  # one tick per fraction: its images, its share
    ax.set_xticks(ticks.to_numpy(), [f"{v:.0f}\n{f:.0%}" for f, v in ticks.items()], fontsize=7)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training images (train_fraction; whole split clusters, log scale)")
    ax.set_ylabel("validation si_rmse (lower is better)")
    seeds = int(table.n.max()) if len(table) else 0
    ax.set_title(f"{experiment.path.name}: data efficiency"
                 + (f" (line: mean of up to {seeds} seeds, band: their range)" if seeds > 1 else ""), fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, experiment / "figures" / "data_efficiency.png")


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which points no other point beats: none has ``x`` and ``y`` both at most its own, one
    strictly lower (lower is better on both axes)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    le = (x[None, :] <= x[:, None]) & (y[None, :] <= y[:, None])  # [i, j]: j at least as good as i
    lt = (x[None, :] < x[:, None]) | (y[None, :] < y[:, None])
    return ~(le & lt).any(axis=1)


PARETO_AXES = (("cost_usd", "cost of the trial (US$)"), ("infer_ms", "inference time per image (ms, its device)"))


def pareto_figure(experiment: Experiment) -> Path | None:
    """si_rmse against each of ``PARETO_AXES`` the leaderboard has values for, one panel each: the
    finished trials as dots (labelled by architecture), their Pareto front as a step line.
    ``None`` when the rows carry neither."""
    df = experiment.saved_leaderboard()
    ok = df[df.si_rmse.notna()]
    axes = [(col, label) for col, label in PARETO_AXES if col in ok and pd.to_numeric(ok[col], errors="coerce").notna().any()]
    if not axes:
        return None
    fig = Figure(figsize=(5.2 * len(axes), 4.2), layout="constrained")
    for ax, (col, label) in zip(np.atleast_1d(fig.subplots(1, len(axes))), axes, strict=True):
        rows = ok.assign(_x=pd.to_numeric(ok[col], errors="coerce")).dropna(subset=["_x"])
        front = rows[pareto_front(rows._x.to_numpy(), rows.si_rmse.to_numpy())].sort_values("_x")
        ax.scatter(rows._x, rows.si_rmse, s=14, color="0.55", label="trials")
        ax.step(front._x, front.si_rmse, where="post", color="tab:red", marker="o", label="Pareto front")
        for _, r in front.iterrows():
            ax.annotate(str(r.arch), (r._x, r.si_rmse), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("validation si_rmse (lower is better)")
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"{experiment.path.name}: quality against cost and speed", fontsize=9)
    return save_figure(fig, experiment / "figures" / "pareto.png")


def make_figures(experiment: Experiment, *, n: int = 4, max_models: int = 6,
                 device: str | None = None, overwrite: bool = False) -> list[Path]:
    """The three figures, and the optional ones an experiment has data for (``OPTIONAL_FIGURES``);
    a figure that cannot be drawn is reported and skipped.

    The figures are checked first by the output rule (``grid.inference.outputs``): an existing
    file depth-grid did not write is replaced only with ``overwrite``.
    """
    if n < 1 or max_models < 1:
        raise ValueError(f"--n and --max-models must be >= 1, got {n} and {max_models}")
    reads = Reads().add_experiment(experiment, folder=False)  # figures/ is the experiment's own output folder
    with_data = experiment.record.get("data") or {}
    if with_data.get("root"):
        reads.add_folder(with_data["root"], "the dataset folder")
    check_outputs((experiment / "figures" / name for name in FIGURES + OPTIONAL_FIGURES), reads, overwrite=overwrite,
                  option="a figure", advice="move it out of the figures folder")
    out = []
    jobs = [("comparison", lambda: comparison_figure(experiment, n=n, max_models=max_models,
                                                     device=device)),
            ("leaderboard", lambda: leaderboard_figure(experiment)),
            ("clusters", lambda: cluster_figure(experiment)),
            ("leakage audit", lambda: audit_figure(experiment)),  # None: nothing to show
            ("data efficiency", lambda: data_efficiency_figure(experiment)),
            ("Pareto", lambda: pareto_figure(experiment))]
    for name, job in jobs:
        try:
            path = job()
        except (DataError, CheckpointError, LeaderboardError) as e:
            log.warning("%s figure skipped: %s", name, e)
        else:
            if path is not None:
                out.append(path)
                remember(out[-1:])
    return out
