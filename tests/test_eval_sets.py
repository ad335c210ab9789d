"""``grid.run --eval-data``: a real smoke grid on a logical GPU scores every trial's best weights on
an extra set of generated scenes as it ends; the leaderboard's columns equal grid.predict +
grid.evaluate of the same checkpoint on that set; GPU-hours are priced; resume does not re-score."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from grid.cli import command
from grid.cli.run import parse_args
from grid.experiment.eval_data import parse_eval_data
from grid.experiment.run import run
from grid.synth import generate
from trainables.config import ConfigError

evaluate_main = command("evaluate")
predict_main = command("predict")
grid_main = command("run")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=1)


@pytest.fixture(scope="module")
def extra(tmp_path_factory) -> Path:
    """Other generated rooms, at another size: the zero-shot set."""
    return generate(tmp_path_factory.mktemp("extra"), scenes=2, views=2, size=(36, 60), seed=7)


def test_eval_data_columns_equal_evaluate_of_the_checkpoint_and_a_logical_gpu_is_priced(
        ray_session, scenes: Path, extra: Path, tmp_path: Path, capsys):
    results = tmp_path / "results"
    argv = ["--space", "smoke", "--data", str(scenes), "--results", str(results), "--name", "zs",
            "--gpus-per-trial", "1", "--verbose", "0", "--eval-data", f"rooms={extra}:format=cil,list=train_list.txt"]
    exp = run(parse_args(argv))
    assert "Estimated cost: $" in capsys.readouterr().out
    board = pd.read_csv(exp / "leaderboard.csv")
    assert (board.status == "finished").all(), board[["arch", "status", "error"]]
    assert {"si_rmse@rooms", "abs_rel@rooms", "delta1@rooms"} <= set(board.columns)
    assert (board.eval_epoch == board.best_epoch).all()
    for row in board.itertuples():
        preds = tmp_path / "preds" / row.trial_id
        assert predict_main(["--checkpoint", row.checkpoint, "--input", str(extra / "train_list.txt"),
                             "--out", str(preds), "--workers", "0", "--no-png"]) == 0
        assert evaluate_main(["--pred", str(preds), "--data", str(extra), "--json", str(preds / "m.json")]) == 0
        scores = json.loads((preds / "m.json").read_text())
        for metric in ("si_rmse", "abs_rel", "delta1"):
            assert getattr(board, f"{metric}@rooms")[row.Index] == pytest.approx(scores[metric], abs=1e-5), metric
        assert scores["si_rmse"] != pytest.approx(row.si_rmse, abs=1e-6)  # another set than validation
    # A logical GPU: each trial held it, ran on the CPU, and is priced at the table's default.
    assert (board.gpu_hours > 0).all() and (board.cost_usd > 0).all()
    assert set(board.accelerator) == {"default (no CUDA device seen)"}
    md = (exp / "leaderboard.md").read_text()
    assert "si_rmse@rooms" in md and "cost_usd" in md and "Estimated cost: $" in md
    record = json.loads((exp / "experiment.json").read_text())
    assert [s["name"] for s in record["signature"]["eval_data"]] == ["rooms"]

    # Resume: the same command keeps the finished, scored trials as they are (nothing re-scored).
    before = {p: p.read_text() for p in (results / "ray" / "zs").glob("*/result.json")}
    run(parse_args(argv))
    assert {p: p.read_text() for p in before} == before
    pd.testing.assert_frame_equal(pd.read_csv(exp / "leaderboard.csv"), board)
    # --dry-run's estimate from the seconds per epoch this run measured, and the eval set checked.
    assert grid_main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "eval set rooms: 4 items" in out and "measured by the earlier run" in out and "on T4 ($0.14/h)" in out


def test_dry_run_estimates_the_cost_from_a_stated_time_per_epoch(tmp_path: Path, capsys):
    argv = ["--space", "smoke", "--dry-run", "--results", str(tmp_path)]
    assert grid_main([*argv, "--epoch-seconds", "1800", "--gpus-per-trial", "1"]) == 0
    # No --data: the CPU profile's 2 epochs; 2 trials x 2 epochs x 30 min x 1 GPU = 2 GPU-hours
    assert "cost estimate: 2.00 GPU-hours (1800 s per epoch (given), 1 GPU per trial): $0.28 on T4" in \
        capsys.readouterr().out
    assert grid_main(argv) == 0
    assert "cost: unknown, no time per epoch for mobilenet_unet, unet: pass --epoch-seconds" in capsys.readouterr().out


def test_an_unreadable_eval_set_fails_before_any_trial_naming_the_file(scenes: Path, tmp_path: Path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pairs.txt").write_text("rgb/0.png depth/0.png\n")
    common = ["--space", "smoke", "--data", str(scenes), "--results", str(tmp_path / "r"), "--gpus-per-trial", "0"]
    assert grid_main([*common, "--eval-data", f"tum={bad}:format=pairs,depth_scale=5000"]) == 2
    err = capsys.readouterr().err
    assert "--eval-data tum" in err and str(bad / "rgb" / "0.png") in err
    assert grid_main([*common, "--eval-data", f"a={scenes}", "--eval-data", f"a={scenes}"]) == 2
    assert "given more than once" in capsys.readouterr().err
    assert not (tmp_path / "r" / "ray").exists()


def test_eval_data_syntax():
    s = parse_eval_data("tum=/data/tum:format=pairs,depth_scale=5000,crop=eigen,list=val.txt")
    assert (s.name, s.root) == ("tum", Path("/data/tum"))
    assert s.spec_kwargs() == {"format": "pairs", "depth_scale": 5000.0, "crop": "eigen", "list_file": "val.txt"}
    assert parse_eval_data("plain=/a/b").spec_kwargs() == {}
    for text, problem in [("nodir", "NAME=DIR"), ("a@b=/x", "name"), ("t=/x:colour=red", "unknown"),
                          ("t=/x:depth_scale=-1", "depth_scale"), ("t=/x:format=png", "format")]:
        with pytest.raises(ConfigError, match=problem):
            parse_eval_data(text)


def test_the_last_epoch_scores_the_best_stored_weights_when_they_beat_its_own(monkeypatch, extra: Path):
    """At the last epoch a trial whose validation got worse scores its best stored checkpoint."""
    import torch

    from trainables import eval_sets
    from trainables.config import TrialConfig
    from trainables.data import DatasetSpec, index_dataset
    from trainables.models import build_model

    cfg = TrialConfig(arch="unet", model_kwargs={"size": "tiny"}, image_size=(32, 48), num_workers=0)
    spec = DatasetSpec(root=extra)
    sets = (eval_sets.EvalSet("rooms", spec, tuple(index_dataset(spec))),)
    torch.manual_seed(0)
    last, best = build_model("unet", size="tiny"), build_model("unet", size="tiny")
    with torch.no_grad():
        for p in best.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    cpu = torch.device("cpu")
    own = eval_sets.score_eval_sets(sets, best, {"si_rmse": 0.2}, cfg, cpu, epoch=2)
    monkeypatch.setattr(eval_sets, "_stored_best", lambda: (best.state_dict(), 0.1, 2))
    scored = eval_sets.score_eval_sets(sets, last, {"si_rmse": 0.3}, cfg, cpu, epoch=3)
    assert scored == {**own, "eval_epoch": 2} and scored["images@rooms"] == 4
    kept = eval_sets.score_eval_sets(sets, last, {"si_rmse": 0.05}, cfg, cpu, epoch=3)  # its own is best
    assert kept["eval_epoch"] == 3 and kept["si_rmse@rooms"] != scored["si_rmse@rooms"]
    assert eval_sets.score_eval_sets((), last, {"si_rmse": 0.3}, cfg, cpu, epoch=3) == {}
