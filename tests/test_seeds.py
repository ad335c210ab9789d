"""Seeds and confidence intervals: ``--seeds K`` makes the trial seed a grid dimension, each
trial stores its best epoch's per-image scores, and the leaderboard groups the rows that differ
only by seed (mean, std, a paired per-image bootstrap interval against the best group)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from s3_server import S3Server, s3_server_fixture  # noqa: F401  (the fixture)

from grid.cli import command
from grid.experiment.groups import (
    EXPLAIN,
    GROUPS_CSV,
    PER_IMAGE_FILE,
    group_table,
    read_scores,
    scores_uri,
)
from grid.experiment.stats import Interval, mean_scores, paired_bootstrap, verdict
from grid.experiment.storage import Storage
from grid.synth import generate

METRICS = ("si_rmse", "abs_rel", "rmse", "delta1")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=6, views=3, size=(40, 56), seed=1)


def _best_epoch(trial_dir: Path) -> dict:
    """The trial's own report with the best validation si_rmse (result.json)."""
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    return min(rows, key=lambda r: r["si_rmse"])


def _independent_interval(best: dict[str, float], other: dict[str, float]) -> tuple[float, float, float]:
    """The documented recipe, written out: paired images in name order, 2000 resamples of the
    images with replacement from numpy's generator seeded 0, the 2.5th and 97.5th percentiles."""
    names = sorted(set(best) & set(other))
    d = np.array([other[n] - best[n] for n in names])
    idx = np.random.default_rng(0).integers(0, len(d), size=(2000, len(d)))
    means = d[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(low), float(high)


def test_smoke_with_two_seeds_groups_rows_with_mean_std_and_interval(ray_session, scenes: Path, tmp_path: Path,
                                                                     capsys) -> None:
    from grid import run_grid

    results = tmp_path / "results"
    board, exp = run_grid("smoke", data=scenes, results=results, gpus_per_trial=0, verbose=0, seeds=2)
    assert (board.status == "finished").all(), board[["arch", "status", "error"]]
    assert sorted(zip(board.arch, board.seed, strict=True)) == [("mobilenet_unet", 0), ("mobilenet_unet", 1),
                                                                ("unet", 0), ("unet", 1)]
    assert board.groupby("arch").group.nunique().eq(1).all() and board.group.nunique() == 2

    val = sorted(json.loads((exp / "split.json").read_text())["val"][:4])  # smoke: max_val_images 4
    trial_dirs = {d.name: d for d in (results / "ray" / "smoke").iterdir() if (d / "params.json").is_file()}
    per_trial: dict[str, dict[str, float]] = {}  # trial id -> per-image scores, read from the files
    by_arch: dict[str, list[tuple[dict, dict]]] = {}
    for row in board.itertuples():
        (trial_dir,) = [d for name, d in trial_dirs.items() if row.trial_id in name]
        assert json.loads((trial_dir / "params.json").read_text())["seed"] == row.seed
        best = _best_epoch(trial_dir)
        ckpt_dir = Path(row.checkpoint).parent
        scores = json.loads((ckpt_dir / PER_IMAGE_FILE).read_text())["scores"]
        assert row.per_image == str(ckpt_dir / PER_IMAGE_FILE)
        # The stored scores are the validation images' own: their mean is the trial's si_rmse.
        assert sorted(scores) == val and statistics.fmean(scores.values()) == pytest.approx(best["si_rmse"], rel=1e-9)
        per_trial[row.trial_id] = scores
        by_arch.setdefault(row.arch, []).append((best, scores))

    groups = pd.read_csv(exp / GROUPS_CSV)
    assert len(groups) == 2 and list(groups.verdict)[0] == "best"
    for g in groups.itertuples():
        runs = by_arch[g.arch]
        assert g.seeds == "0 1" and g.n_seeds == 2
        for m in METRICS:  # mean and sample std over the seeds' result files
            values = [best[m] for best, _ in runs]
            assert getattr(g, f"{m}_mean") == pytest.approx(statistics.fmean(values), rel=1e-9)
            assert getattr(g, f"{m}_std") == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-12)

    # The interval against the best group, recomputed here from the stored per-image scores.
    best_arch, other_arch = groups.arch[0], groups.arch[1]
    seed_mean = {a: {n: statistics.fmean(s[n] for _, s in by_arch[a]) for n in by_arch[a][0][1]} for a in by_arch}
    diff, low, high = _independent_interval(seed_mean[best_arch], seed_mean[other_arch])
    other = groups.iloc[1]
    assert (other.si_rmse_diff, other.ci_low, other.ci_high) == pytest.approx((diff, low, high), rel=1e-9, abs=1e-12)
    assert other.images == len(val)
    expected = "not distinguishable from the best" if low <= 0 <= high else (
        "worse than the best" if low > 0 else "better than the best on the shared images")
    assert other.verdict == expected

    again = exp.seed_groups()  # the Python API: the same table from the saved leaderboard
    assert list(again.verdict) == list(groups.verdict) and list(again.ci_low) == pytest.approx(list(groups.ci_low))
    md = (exp / "leaderboard.md").read_text()
    assert "## Seeds" in md and EXPLAIN in md and f"| {other.group} |" in md
    # depth-grid leaderboard prints the grouped view and rewrites the CSV from storage alone.
    (exp / GROUPS_CSV).unlink()
    assert command("leaderboard")([str(exp)]) == 0
    assert "## Seeds" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(exp / GROUPS_CSV), groups)


def test_identical_models_are_not_distinguishable_and_different_ones_are() -> None:
    rng = np.random.default_rng(3)
    names = [f"img_{i:03d}" for i in range(60)]
    base = dict(zip(names, rng.uniform(0.1, 0.3, len(names)), strict=True))
    same = paired_bootstrap(base, dict(base))
    assert same == Interval(0.0, 0.0, 0.0, 60) and same.covers_zero
    assert verdict(same) == "not distinguishable from the best"

    worse = {n: s + 0.05 + rng.normal(0, 0.01) for n, s in base.items()}
    far = paired_bootstrap(base, worse)
    assert far.low > 0.03 and not far.covers_zero and verdict(far) == "worse than the best"
    diff, low, high = _independent_interval(base, worse)
    assert (far.diff, far.low, far.high) == pytest.approx((diff, low, high), rel=1e-12)

    assert verdict(None) == "no per-image scores"
    assert mean_scores([{"a": 1.0, "b": 2.0}, {"a": 3.0, "c": 5.0}]) == {"a": 2.0}  # images every seed scored
    with pytest.raises(ValueError, match="share no scored"):
        paired_bootstrap({"a": 1.0}, {"b": 1.0})


def _board_row(tmp: Path, trial: str, arch: str, seed: int, scores: dict[str, float]) -> dict:
    ckpt = tmp / trial / "checkpoint_000000"
    ckpt.mkdir(parents=True)
    (ckpt / PER_IMAGE_FILE).write_text(json.dumps({"metric": "si_rmse", "scores": scores}))
    si = statistics.fmean(scores.values())
    return {"trial_id": trial, "arch": arch, "tag": "", "lam": 0.5, "lr": 1e-3, "weight_decay": 0.01,
            "si_rmse": si, "abs_rel": si / 2, "rmse": si * 3, "delta1": 1 - si, "status": "finished",
            "seed": seed, "group": arch, "per_image": str(ckpt / PER_IMAGE_FILE)}


def test_group_table_marks_identical_models_not_distinguishable_and_a_worse_one_distinguishable(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    names = [f"v{i:02d}" for i in range(40)]
    seeds = [{n: float(v) for n, v in zip(names, rng.uniform(0.1, 0.3, 40), strict=True)} for _ in range(2)]
    rows = []
    for arch, shift in (("good", 0.0), ("twin", 0.0), ("bad", 0.1)):  # twin: the same scores as good
        rows += [_board_row(tmp_path, f"{arch}_{s}", arch, s, {n: v + shift for n, v in seeds[s].items()})
                 for s in (0, 1)]
    table = group_table(pd.DataFrame(rows)).set_index("arch")
    assert table.loc["twin", "si_rmse_diff"] == 0 and table.loc["twin", "verdict"] in (
        "best", "not distinguishable from the best")
    assert table.loc["bad", "verdict"] == "worse than the best"
    assert table.loc["bad", "si_rmse_diff"] == pytest.approx(0.1)
    assert table.loc["bad", "si_rmse_std"] == pytest.approx(statistics.stdev(
        [statistics.fmean(s.values()) + 0.1 for s in seeds]))


def test_per_image_scores_are_read_through_storage_from_s3(s3_server: S3Server) -> None:
    """A storage URI (``--storage s3://...``): the ``per_image`` column and the grouped view read
    the scores through ``Storage``, from a real S3-protocol server (moto) on loopback."""
    root = s3_server.bucket("seeds") + "/ray/exp"
    client = s3_server.client()
    rng = np.random.default_rng(7)
    base = [rng.uniform(0.1, 0.3, 20) for _ in range(2)]  # per seed; "bad" is 0.2 worse on each image
    rows = []
    for arch, shift in (("good", 0.0), ("bad", 0.2)):
        for seed in (0, 1):
            key = f"ray/exp/{arch}_{seed}/checkpoint_000000"
            scores = {f"v{i}": float(v) + shift for i, v in enumerate(base[seed])}
            client.put_object(Bucket="seeds", Key=f"{key}/checkpoint.pt", Body=b"weights")
            client.put_object(Bucket="seeds", Key=f"{key}/{PER_IMAGE_FILE}",
                              Body=json.dumps({"metric": "si_rmse", "scores": scores}).encode())
            store = Storage(root)
            uri = scores_uri(store, store.uri(f"seeds/{key}/checkpoint.pt"))
            assert uri == f"s3://seeds/{key}/{PER_IMAGE_FILE}" and read_scores(uri) == scores
            si = statistics.fmean(scores.values())
            rows.append({"trial_id": f"{arch}_{seed}", "arch": arch, "si_rmse": si, "abs_rel": si, "rmse": si,
                         "delta1": 1 - si, "status": "finished", "seed": seed, "group": arch, "per_image": uri})
    table = group_table(pd.DataFrame(rows))
    assert list(table.arch) == ["good", "bad"] and list(table.verdict) == ["best", "worse than the best"]
    assert table.images[1] == 20 and table.si_rmse_diff[1] == pytest.approx(0.2)
    assert scores_uri(Storage(root), "s3://seeds/ray/exp/none/checkpoint_000000/checkpoint.pt") == ""


def test_seeds_with_a_search_algorithm_or_a_set_seed_are_refused(tmp_path: Path, capsys) -> None:
    main = command("run")
    assert main(["--space", "optuna", "--seeds", "2", "--results", str(tmp_path), "--dry-run"]) == 2
    assert "takes no seed grid" in capsys.readouterr().err
    assert main(["--space", "smoke", "--seeds", "2", "--set", "seed=3", "--results", str(tmp_path)]) == 2
    assert "--seeds and --set seed" in capsys.readouterr().err
    assert main(["--space", "smoke", "--seeds", "0", "--results", str(tmp_path)]) == 2
    assert "--seeds takes a count" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
