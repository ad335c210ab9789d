"""Faults: a failing trial does not stop the grid, a SIGKILLed trial resumes from its checkpoint,
and bad input fails early with a clear message and nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from grid.cli import command
from grid.cli.run import parse_args
from grid.experiment.run import run
from grid.synth import generate
from search_spaces.profiles import PAPER
from trainables.config import TrialConfig
from trainables.io import atomic_write
from trainables.models import PretrainedWeightsError, build_model
from trainables.trainable import build_trial_model, trial_model

main = command("run")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=2)


def _grid(scenes: Path, results: Path, name: str, *extra: str) -> Path:
    return run(parse_args(["--space", "smoke", "--data", str(scenes), "--results", str(results), "--name", name,
                           "--gpus-per-trial", "0", "--verbose", "0", *extra]))


def test_a_failing_trial_does_not_stop_the_grid(ray_session, scenes: Path, tmp_path: Path):
    # The fault hits the architecture first by name and first to run (one trial at a time), so
    # the healthy trial is still to come when it fails, and a leaderboard in name or run order
    # would list it first: only sorting by score puts it last.
    results = tmp_path / "results"
    rc = main(["--space", "smoke", "--data", str(scenes), "--results", str(results), "--name", "isolation",
               "--gpus-per-trial", "0", "--verbose", "0", "--arch", "mobilenet_unet", "--arch", "unet",
               "--max-concurrent", "1", "--set", "fault=mobilenet_unet:raise@0.1", "--max-failures", "1"])
    assert rc == 1  # a trial ended in error: the exit status says so, the leaderboard says which
    exp = results / "isolation"
    board = pd.read_csv(exp / "leaderboard.csv")
    assert list(board.arch) == ["unet", "mobilenet_unet"], board[["arch", "status", "si_rmse"]]
    ok, failed = board.iloc[0], board.iloc[1]
    assert ok.status == "finished" and ok.epochs_done == 1 and Path(ok.checkpoint).is_file()
    assert failed.status == "error" and pd.isna(failed.si_rmse) and pd.isna(failed.checkpoint)
    assert "injected fault at epoch 0 step 1" in str(failed.error)
    # An exception in the trial's code counts: it trains 1 + --max-failures 1 times, then ends
    # (the third attempt, left no retry, stops before building anything: trainables.retries).
    assert (failed.failures, failed.preemptions) == (2, 0) and (ok.failures, ok.preemptions) == (0, 0)
    (failed_dir,) = [p.parent for p in (results / "ray" / "isolation").glob(f"*{failed.trial_id}*/params.json")]
    errors = (failed_dir / "error.txt").read_text()
    assert errors.count("injected fault at epoch 0 step 1") == 2 + 1  # twice raised, once quoted
    assert "Failure # 3" in errors and "gave up after 2 failure(s) (--max-failures 1)" in errors
    assert "Failure # 4" not in errors
    report = (exp / "leaderboard.md").read_text()
    assert f"`{failed.trial_id}` (mobilenet_unet) failed: {failed.error}" in report


def _last_checkpoint(results: Path, name: str) -> tuple[dict, list[dict], Path]:
    (trial_dir,) = [p.parent for p in (results / "ray" / name).glob("*/params.json")]
    last = max(trial_dir.glob("checkpoint_*"), key=lambda p: p.name)
    state = torch.load(last / "checkpoint.pt", map_location="cpu", weights_only=True)
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    return state, rows, trial_dir


RECIPE = ["--set", "augment=standard", "--set", "encoder_lr_mult=0.1", "--set", "schedule=onecycle",
          "--set", "warmup_epochs=1", "--set", "ema=0.9", "--set", "tta=true"]


@pytest.mark.parametrize("recipe", [[], RECIPE], ids=["defaults", "every_recipe_option"])
def test_a_sigkilled_trial_resumes_from_its_checkpoint_exactly(ray_session, scenes: Path, tmp_path: Path,
                                                               recipe: list[str]):
    """The trial process kills itself (SIGKILL) at the start of its second epoch; Tune retries it
    from the epoch-1 checkpoint and it ends with exactly epochs 1, 2, 3 logged once each, and with
    the same weights, optimiser state and metrics as the same trial run straight through (the
    checkpoint restores the model, the optimiser and every random state: shuffle, flips, the
    augmentation's draws; with an EMA both its weights and the raw ones)."""
    results = tmp_path / "results"
    common = ["--arch", "mobilenet_unet", "--set", "epochs=3", "--set", "max_steps_per_epoch=3",
              "--max-failures", "2", *recipe]
    exp = _grid(scenes, results, "preempt", *common, "--set", "fault=mobilenet_unet:kill@1.0")
    _grid(scenes, results, "straight", *common)
    board = pd.read_csv(exp / "leaderboard.csv")
    assert list(board.status) == ["finished"] and list(board.epochs_done) == [3]
    killed, killed_rows, trial_dir = _last_checkpoint(results, "preempt")
    assert "Failure # 1" in (trial_dir / "error.txt").read_text()  # it really died once
    assert [r["epoch"] for r in killed_rows] == [1, 2, 3]
    events = EventAccumulator(str(trial_dir)).Reload()
    assert [e.step for e in events.Scalars("val/si_rmse")] == [1, 2, 3]

    straight, straight_rows, _ = _last_checkpoint(results, "straight")
    assert straight["epoch"] == killed["epoch"] == 3
    for part in ("model", "raw_model") if recipe else ("model",):
        for key, tensor in straight[part].items():
            assert torch.equal(tensor, killed[part][key]), f"{part} weight {key} differs after the resume"
    assert repr(straight["optimizer"]) == repr(killed["optimizer"])  # Adam's moments and steps
    metrics = ("train_loss", "si_rmse", "abs_rel", "rmse", "delta1")
    assert [[r[m] for m in metrics] for r in killed_rows] == [[r[m] for m in metrics] for r in straight_rows]


def test_a_resumed_model_takes_every_weight_and_its_label_from_the_checkpoint() -> None:
    """The retried trial may run on a node without the hub cache: ``trial_model`` must not ask
    for the released weights again, and keeps the label the trial started with."""
    cfg = TrialConfig(arch="segformer_b4", **{**PAPER, "model_kwargs": {"size": "tiny"}})
    with pytest.raises(PretrainedWeightsError):  # no weights can be had for it here
        build_trial_model(cfg)
    trained = build_model("segformer_b4", size="tiny")
    model, label = trial_model(cfg, {"model": trained.state_dict(), "weights": "pretrained"})
    assert label == "pretrained"
    for key, tensor in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor)


@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "--epochs: must be > 0"),
    (["--image-size", "3x4"], "at least 8x8"),
    (["--image-size", "big"], "must look like 426x560"),
    (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0"),
    (["--depth-scale", "nan"], "must be > 0"),
])
def test_invalid_cli_numbers_exit_with_a_message(argv: list[str], message: str, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--space", "smoke", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_architecture_and_unwritable_storage(scenes: Path, tmp_path: Path, capsys):
    assert main(["--space", "smoke", "--arch", "resnet9000", "--data", str(scenes),
                 "--results", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    assert "unknown architecture(s) ['resnet9000']" in err and "segformer_b5" in err
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["--space", "smoke", "--data", str(scenes), "--results", str(tmp_path / "r2"),
                 "--storage", str(blocker / "ray")]) == 2
    assert f"{blocker / 'ray'}: cannot write results there" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "splits").exists()  # nothing computed before the check


def test_corrupt_image_fails_before_any_trial(scenes: Path, tmp_path: Path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(scenes, data)
    victim = sorted(data.glob("*_rgb.png"))[3]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated PNG
    assert main(["--space", "smoke", "--data", str(data), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert victim.name in err
    assert not (tmp_path / "r" / "ray").exists()  # no Tune experiment started (nothing written at all)
    assert not list((tmp_path / "r" / "splits").glob("*.json"))  # no split cached


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path):
    target = tmp_path / "leaderboard.csv"
    target.write_text("old,complete\n")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("new,half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["leaderboard.csv"]  # no temp file left
    old_mask = os.umask(0o022)
    try:
        with atomic_write(target) as fh:
            fh.write("new,complete\n")
    finally:
        os.umask(old_mask)
    assert target.read_text() == "new,complete\n"
    assert target.stat().st_mode & 0o777 == 0o644  # as a plain write under umask 022, not 0600


def test_a_config_error_inside_a_trial_is_not_retried(ray_session, scenes: Path, tmp_path: Path):
    """A setting the driver could not check (a search algorithm's sample, say) that the trial's
    door rejects: retrying cannot fix it, so the trial reports it once and ends as an error."""
    from ray import tune

    from grid.experiment.leaderboard import build_leaderboard
    from grid.experiment.prepare import prepare_bundle
    from trainables.data import DatasetSpec
    from trainables.trainable import train_depth

    bundle, _ = prepare_bundle(DatasetSpec(root=scenes), tmp_path / "results")
    storage = tmp_path / "ray"
    tuner = tune.Tuner(
        tune.with_parameters(train_depth, data=bundle), param_space={"arch": "unet", "lr": -1.0},
        tune_config=tune.TuneConfig(metric="si_rmse", mode="min"),
        run_config=tune.RunConfig(name="bad", storage_path=str(storage), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=3)))
    tuner.fit()
    (trial_dir,) = [p.parent for p in (storage / "bad").glob("*/params.json")]
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert len(rows) == 1 and "lr=-1.0 must be a positive number" in rows[0]["config_error"]
    assert not (trial_dir / "error.txt").exists()  # never raised, so never retried
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "experiment.json").write_text(json.dumps({"tune_dirs": [str(storage / "bad")]}))
    (row,) = build_leaderboard(exp).to_dict("records")
    assert row["status"] == "error" and "ConfigError: trial setting lr=-1.0" in row["error"]


# ---- every check that needs no Ray runs before Ray: nothing computed, nothing written ------------

def test_a_name_clash_lists_the_settings_that_differ(tmp_path: Path):
    from grid.experiment.plan import ExperimentError
    from grid.experiment.prepare import check_resume, record_experiment, signature_changes

    old = {"space": "smoke", "studies": [["smoke", {"arch": {"grid_search": ["unet", "mobilenet_unet"]},
                                                    "lr": 0.001, "epochs": 1}]],
           "data": {"root": "/d", "crop": None}, "split": "fp-sequence-k", "storage": "/r/ray"}
    new = {**old, "studies": [["smoke", {"arch": {"grid_search": ["unet"]}, "lr": 0.01, "epochs": 1}]],
           "data": {"root": "/d", "crop": [0, 10, 0, 10]}}
    assert signature_changes(old, new) == ['data.crop: None -> [0, 10, 0, 10]', 'arch: ["unet", "mobilenet_unet"] -> ["unet"]',
                                           "lr: 0.001 -> 0.01"]
    folder = tmp_path / "exp"
    record_experiment(folder, {"name": "exp", "signature": old, "split": str(folder / "split.json")})
    (folder / "split.json").write_text(json.dumps({"params": {"method": "sequence", "threshold": 0.9, "seed": 0}}))
    before = (folder / "experiment.json").read_text()
    no_split = {k: v for k, v in new.items() if k != "split"}
    with pytest.raises(ExperimentError) as e:
        check_resume(folder, no_split, {"method": "paper", "threshold": 0.9, "seed": 0})
    message = str(e.value)
    assert "started with other settings (data.crop: None -> [0, 10, 0, 10]; arch: " in message and "\n" not in message
    assert message.count(" -> ") == 4 and "; split.method: sequence -> paper)" in message
    with pytest.raises(ExperimentError, match=r"; split\.method: sequence -> paper \(and 1 more\)\)"):
        check_resume(folder, no_split, {"method": "paper", "threshold": 0.9, "seed": 3})  # five: one counted
    check_resume(folder, {k: v for k, v in old.items() if k != "split"}, {"method": "sequence", "threshold": 0.9, "seed": 0})
    with pytest.raises(ExperimentError, match="split: fp-sequence-k -> fp2-sequence-k"):  # the exact check, later
        record_experiment(folder, {"name": "exp", "signature": {**old, "split": "fp2-sequence-k"}})
    assert (folder / "experiment.json").read_text() == before


def test_pre_ray_checks_write_nothing_and_answer_at_once(tmp_path: Path):
    import socket
    import time

    from grid.experiment.gpus import check_cpus, local_node
    from grid.experiment.plan import ExperimentError
    from grid.experiment.preflight import check_address, check_writable

    check_writable(tmp_path / "a" / "b" / "c", create=False)  # --dry-run's: made by the run, not by the check
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("a file")
    with pytest.raises(ExperimentError, match=r"f/r: cannot write results there \(.*f is a file, not a folder\)"):
        check_writable(tmp_path / "f" / "r", create=False)
    with pytest.raises(ExperimentError, match=r"f/r: cannot write results there \(.*f is a file, not a folder\)"):
        check_writable(tmp_path / "f" / "r")
    with socket.socket() as s:  # a port nothing listens on: bound, never listened
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        t0 = time.perf_counter()
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
            with pytest.raises(ExperimentError, match=rf"--address {address}: no Ray cluster answers at 127\.0\.0\.1:{port}"):
                check_address(address)
        assert time.perf_counter() - t0 < 5
    check_address("auto")  # Ray's to resolve
    with pytest.raises(ExperimentError, match=r"--cpus-per-trial 64: no node has or can get 64 CPUs.*The largest node "
                                              r"has 2 and no node type to add; pass --cpus-per-trial 2 or less"):
        check_cpus(64, [2.0, 1.0], [])
    with pytest.raises(ExperimentError, match="its autoscaler can add at most 8 per node"):
        check_cpus(16, [2.0], [8.0, 4.0])
    check_cpus(16, [2.0], [32.0])  # a node type it can add holds it
    check_cpus(16, [2.0], [None])  # a node type that does not say: it might
    check_cpus(2, [2.0], [])
    cpus, gpus = local_node()  # Ray's own resolution of a new local node (internal: fails if it moves)
    assert cpus >= 1 and gpus >= 0


def test_the_weights_path_needs_no_torch_and_is_torchs(tmp_path: Path):
    code = ("import sys; from trainables.weights import mobilenet_v2_weights_path as p; a = p(); "
            "assert 'torch' not in sys.modules; import torch.hub; assert a == p(), (a, p()); print(a)")
    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {}):
        base = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
        out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]


def test_preflight_of_a_sound_run_starts_and_writes_nothing(scenes: Path, tmp_path: Path):
    from grid.experiment.config import RunConfig
    from grid.experiment.preflight import preflight

    checked = preflight(RunConfig(space="smoke", data=scenes, results=tmp_path / "r"), dry_run=True)
    assert len(checked.items) == 15 and checked.spec.root == scenes.resolve()
    assert checked.storage == str((tmp_path / "r" / "ray").resolve())
    assert list(tmp_path.iterdir()) == []  # --dry-run's checks make nothing
    preflight(RunConfig(space="smoke", data=scenes, results=tmp_path / "r"))
    assert list(tmp_path.iterdir()) == []  # nor a run's: it makes its folders after Ray's checks


def test_retry_errored_re_runs_a_trial_that_used_up_its_retries(ray_session, scenes: Path, tmp_path: Path):
    """--max-failures 0 and a trial that raises: it ends in error after one try (and the short
    attempt that ends it). Resumed with --retry-errored, Tune re-runs it as a new trial (its own
    folder), which trains again and counts its failures afresh."""
    results = tmp_path / "results"
    args = ["--arch", "unet", "--set", "fault=unet:raise@0.1", "--max-failures", "0"]
    exp = _grid(scenes, results, "again", *args)
    (first,) = [p.parent for p in (results / "ray" / "again").glob("*/params.json")]
    assert (first / "error.txt").read_text().count("injected fault at epoch 0 step 1") == 1 + 1  # raised, quoted
    _grid(scenes, results, "again", *args, "--retry-errored")
    (again,) = [p.parent for p in (results / "ray" / "again").glob("*/params.json") if p.parent != first]
    assert (again / "error.txt").read_text().count("injected fault at epoch 0 step 1") == 1 + 1  # it trained again
    assert json.loads((again / "retries.json").read_text())["failures"] == 1
    board = pd.read_csv(exp / "leaderboard.csv")
    assert set(board.status) == {"error"} and set(board.failures) == {1}
