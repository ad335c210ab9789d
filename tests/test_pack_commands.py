"""Every command that reads a dataset takes a pack: ``predict``, ``submit``, ``evaluate`` and
``--eval-data`` on an ``s3://`` pack (a real S3 server, moto on 127.0.0.1) give what they give on
the loose folder, reading its shards through the node-local cache (``--cache-dir``) once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from s3_server import S3Server, s3_server_fixture  # noqa: F401  (the fixture)
from test_pack import s3_pack_fixture, scenes_fixture  # noqa: F401  (fixtures: 15 items at 40x56; in s3://packs/scenes, 4 shards)
from test_predict import make_checkpoint
from test_submit import _test_set

from grid.cli import command

predict_main, submit_main, evaluate_main = command("predict"), command("submit"), command("evaluate")
pack_main = command("pack")
SHARDS = [f"/packs/scenes/shard-{i:05d}.tar" for i in range(4)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "checkpoint.pt", image_size=(32, 48))


def _maps(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted(folder.glob("*.npy"))}


def test_predict_on_a_pack_writes_the_loose_folders_maps(s3_server: S3Server, s3_pack: str, scenes: Path,
                                                         ckpt: Path, tmp_path: Path, capsys):
    args = ["--checkpoint", str(ckpt), "--workers", "0", "--no-png"]
    assert predict_main([*args, "--input", str(scenes), "--out", str(tmp_path / "loose")]) == 0
    cache = tmp_path / "cache"
    before = [s3_server.gets(s) for s in SHARDS]
    assert predict_main([*args, "--input", s3_pack, "--out", str(tmp_path / "packed"), "--cache-dir", str(cache)]) == 0
    loose, packed = _maps(tmp_path / "loose"), _maps(tmp_path / "packed")
    assert len(loose) == 15 and loose.keys() == packed.keys()
    for name, depth in loose.items():
        np.testing.assert_array_equal(packed[name], depth)
    assert [s3_server.gets(s) - b for s, b in zip(SHARDS, before, strict=True)] == [1, 1, 1, 1]
    assert len(list(cache.glob("packs/*/shard-*.tar"))) == 4  # read through the node cache
    assert "15 depth maps" in capsys.readouterr().out


def test_submit_on_a_pack_writes_the_loose_folders_csv(s3_pack: str, scenes: Path, ckpt: Path, tmp_path: Path,
                                                       capsys):
    args = ["--checkpoint", str(ckpt), "--workers", "0", "--cache-dir", str(tmp_path / "cache")]
    loose, packed = tmp_path / "loose" / "sub.csv", tmp_path / "packed" / "sub.csv"
    assert submit_main([*args, "--data", str(scenes), "--list", "train_list.txt", "--out", str(loose)]) == 0
    assert submit_main([*args, "--data", s3_pack, "--out", str(packed)]) == 0  # the pack's own list
    assert packed.read_bytes() == loose.read_bytes() and len(loose.read_text().splitlines()) == 16
    capsys.readouterr()
    assert submit_main([*args, "--data", s3_pack, "--list", "test_list.txt", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "packed with --list train_list.txt, not test_list.txt" in err
    assert not (tmp_path / "x.csv").exists()


def test_a_test_list_packs_its_images_for_submit(s3_server: S3Server, ckpt: Path, tmp_path: Path, capsys):
    """A Kaggle-style test list (no depth files, an RGB-only line) packs as a test pack: submit
    writes the loose folder's CSV from it; a command that needs depth refuses it."""
    data, ids = _test_set(tmp_path / "kaggle", n=3)
    uri = s3_server.bucket("tests") + "/kaggle"
    assert pack_main(["--data", str(data), "--list", "test_list.txt", "--out", uri]) == 0
    assert "packed 3 items (images only: a test list)" in capsys.readouterr().out
    args = ["--checkpoint", str(ckpt), "--workers", "0", "--cache-dir", str(tmp_path / "cache")]
    loose, packed = tmp_path / "loose" / "sub.csv", tmp_path / "packed" / "sub.csv"
    assert submit_main([*args, "--data", str(data), "--out", str(loose)]) == 0
    assert submit_main([*args, "--data", uri, "--out", str(packed)]) == 0
    assert packed.read_bytes() == loose.read_bytes()
    assert [line.split(",", 1)[0] for line in packed.read_text().splitlines()[1:]] == ids
    capsys.readouterr()
    assert evaluate_main(["--pred", str(tmp_path / "packed"), "--data", uri, "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{uri}/depth-grid-pack.json: a test pack (images only, no depth)" in err


def test_evaluate_on_a_pack_scores_as_the_loose_folder(s3_pack: str, scenes: Path, ckpt: Path, tmp_path: Path,
                                                       capsys):
    preds = tmp_path / "preds"
    assert predict_main(["--checkpoint", str(ckpt), "--workers", "0", "--no-png", "--input", str(scenes),
                         "--out", str(preds)]) == 0
    capsys.readouterr()
    assert evaluate_main(["--pred", str(preds), "--data", str(scenes), "--json", str(tmp_path / "a.json")]) == 0
    loose = capsys.readouterr().out.splitlines()
    assert evaluate_main(["--pred", str(preds), "--data", s3_pack, "--cache-dir", str(tmp_path / "cache"),
                          "--json", str(tmp_path / "b.json")]) == 0
    packed = capsys.readouterr().out.splitlines()
    assert packed[0] == f"ground truth: cil pack {s3_pack} (train_list.txt); crop none (the pack's)"
    assert packed[1:-1] == loose[1:-1] and len(loose) > 3  # the same table
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["si_rmse"] == b["si_rmse"] and a["count"] == b["count"] == 15
    assert evaluate_main(["--pred", str(preds), "--data", s3_pack, "--cache-dir", str(tmp_path / "cache"),
                          "--crop", "eigen"]) == 2
    assert "packed with --crop none, not 45,471,41,601" in capsys.readouterr().err


def test_eval_data_on_a_pack_scores_as_the_loose_folder(s3_server: S3Server, s3_pack: str, scenes: Path,
                                                        tmp_path: Path):
    from grid.experiment.eval_data import parse_eval_data, resolve_eval_sets
    from trainables.config import TrialConfig
    from trainables.eval_sets import score_eval_sets
    from trainables.models import build_model

    packed = parse_eval_data(f"rooms={s3_pack}:format=cil")
    assert packed.root == s3_pack  # a URI stays a URI
    cache = tmp_path / "cache"
    (loose_set,), (packed_set,) = (resolve_eval_sets([parse_eval_data(f"rooms={scenes}")]),
                                   resolve_eval_sets([packed], cache))
    assert packed_set.spec.pack is not None and packed_set.spec.pack.uri == s3_pack
    assert [it.name for it in packed_set.items] == [it.name for it in loose_set.items]
    torch.manual_seed(0)
    model = build_model("unet", size="tiny")
    cfg = TrialConfig(arch="unet", model_kwargs={"size": "tiny"}, image_size=(32, 48), num_workers=0)
    cpu = torch.device("cpu")
    before = [s3_server.gets(s) for s in SHARDS]
    scores = [score_eval_sets((s,), model, {"si_rmse": 0.3}, cfg, cpu, epoch=1) for s in (loose_set, packed_set)]
    assert scores[0] == scores[1] and scores[0]["images@rooms"] == 15
    assert [s3_server.gets(s) - b for s, b in zip(SHARDS, before, strict=True)] == [1, 1, 1, 1]
    assert len(list(cache.glob("packs/*/shard-*.tar"))) == 4


def test_a_run_takes_a_packed_eval_set_and_check_a_test_pack(s3_server: S3Server, s3_pack: str, tmp_path: Path,
                                                              capsys):
    results = tmp_path / "results"
    assert command("run")(["--space", "smoke", "--eval-data", f"rooms={s3_pack}", "--results", str(results),
                           "--cache-dir", str(tmp_path / "cache"), "--dry-run"]) == 0
    assert f"eval set rooms: 15 items, cil layout, pack {s3_pack}" in capsys.readouterr().out
    data, _ = _test_set(tmp_path / "kaggle", n=3)
    uri = s3_server.bucket("checked") + "/kaggle"
    assert pack_main(["--data", str(data), "--list", "test_list.txt", "--out", uri]) == 0
    assert command("check")(["--data", uri, "--test", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "3 items" in capsys.readouterr().out
