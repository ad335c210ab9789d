"""The leakage audit of an evaluation set (``grid.split.audit``, ``depth-grid split --against``):
planted near-duplicates of training images are found with the right partners, unrelated rooms
are not, with real MobileNetV2 embeddings of generated scenes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import grid.split.graph as split_graph
from grid.cli import command
from grid.split.audit import AuditSet, audit, duplicates, nearest_rows, warning_lines
from trainables.data import DatasetSpec, index_dataset

main = command("split")
THRESHOLD = 0.9


@pytest.fixture(scope="module")
def world(tmp_path_factory, mobilenet_weights) -> dict:
    """A training set of 20 different rooms; an evaluation set of 10 altered copies of training
    rooms 0-9 (brighter, mirrored, resized) and 10 rooms from another seed; a clean set of those
    10 other rooms only. ``planted``: eval item name -> the training item it copies."""
    from grid.synth import generate

    root = tmp_path_factory.mktemp("audit")
    train = generate(root / "train", scenes=20, views=1, size=(48, 64), seed=7)
    clean = generate(root / "clean", scenes=10, views=1, size=(48, 64), seed=123, motion="drift")
    train_items = index_dataset(DatasetSpec(train))
    leaky = root / "leaky"
    leaky.mkdir()
    lines, planted = [], {}
    for k, it in enumerate(train_items[:10]):
        rgb = np.asarray(Image.open(it.rgb))
        altered = [Image.fromarray(np.clip(rgb * 0.9 + 12, 0, 255).astype(np.uint8)),  # exposure
                   Image.fromarray(np.ascontiguousarray(rgb[:, ::-1])),  # mirror
                   Image.fromarray(rgb).resize((80, 60))][k % 3]  # another resolution
        name = f"leak_{k:02d}_rgb.png"
        altered.save(leaky / name)
        shutil.copy(it.depth, leaky / name.replace("_rgb.png", "_depth.npy"))
        planted[name] = it.name
        lines.append(f"{name} {name.replace('_rgb.png', '_depth.npy')}")
    for it in index_dataset(DatasetSpec(clean)):
        for path in (it.rgb, it.depth):
            shutil.copy(path, leaky / f"other_{path.name}")
        lines.append(f"other_{it.rgb.name} other_{it.depth.name}")
    order = np.random.default_rng(0).permutation(len(lines))  # planted ones not first in the list
    (leaky / "train_list.txt").write_text("\n".join(lines[i] for i in order) + "\n")
    return {"train": train, "leaky": leaky, "clean": clean, "planted": planted, "cache": root / "cache"}


def _set(name: str, root: Path) -> AuditSet:
    spec = DatasetSpec(root)
    return AuditSet(name, spec, index_dataset(spec, require_depth=False))


def test_planted_duplicates_are_found_with_their_partners(world):
    spec = DatasetSpec(world["train"])
    found = audit(index_dataset(spec), spec, [_set("leaky", world["leaky"]), _set("clean", world["clean"])],
                  threshold=THRESHOLD, cache_dir=world["cache"], device="cpu")
    assert set(found) == {"leaky", "clean"}
    leaky = found["leaky"]
    assert leaky["near_duplicates"] == 10 == len(leaky["pairs"])
    assert {e: t for e, t, _ in leaky["pairs"]} == world["planted"]
    sims = [c for _, _, c in leaky["pairs"]]
    assert sims == sorted(sims, reverse=True) and min(sims) >= THRESHOLD
    assert found["clean"] == {"near_duplicates": 0, "pairs": []}
    (line,) = warning_lines(found, THRESHOLD)
    assert line.startswith("warning: eval set leaky: 10 image(s) have a near-duplicate")


def test_cli_against_writes_the_audit_json_and_the_pairs_figure(world, tmp_path, capsys):
    out, fig = tmp_path / "audit.json", tmp_path / "pairs.png"
    rc = main(["--data", str(world["train"]), "--against", f"leaky={world['leaky']}",
               "--against", f"clean={world['clean']}:format=cil", "--json", str(out), "--figure", str(fig),
               "--cache-dir", str(world["cache"]), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "leaky: 10 image(s) with a near-duplicate" in printed and "clean: 0 image(s)" in printed
    written = json.loads(out.read_text())
    assert list(written) == ["leaky", "clean"]
    assert {k: set(v) for k, v in written.items()} == {n: {"near_duplicates", "pairs"} for n in written}
    assert written["leaky"]["near_duplicates"] == 10 and written["clean"]["near_duplicates"] == 0
    assert {e: t for e, t, _ in written["leaky"]["pairs"]} == world["planted"]
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(world["cache"].glob("*.json"))  # an audit computes no split
    clean_fig = tmp_path / "clean.png"
    assert main(["--data", str(world["train"]), "--against", f"clean={world['clean']}", "--figure", str(clean_fig),
                 "--cache-dir", str(world["cache"]), "--device", "cpu"]) == 0
    assert "no near-duplicates" in capsys.readouterr().out and not clean_fig.exists()


@pytest.mark.parametrize("args, message", [
    (["--against", "nodir"], "--against takes NAME=DIR[:KEY=VALUE,...], got 'nodir'"),
    (["--against", "a b=/x"], "--against name 'a b': use letters, digits"),
    (["--against", "t={missing}"], "--against t: {missing}: dataset folder does not exist"),
    (["--against", "t={data}:format=tiff"], "--against t: format must be "),
    (["--against", "t={data}", "--against", "t={data}"], "--against: name 't' given more than once"),
])
def test_bad_against_is_one_line(args, message, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_list.txt").write_text("a_rgb.png a_depth.npy\n")
    Image.new("RGB", (8, 8)).save(data / "a_rgb.png")
    np.save(data / "a_depth.npy", np.ones((8, 8), np.float32))
    fill = {"data": str(data), "missing": str(tmp_path / "missing")}
    rc = main(["--data", str(data), *[a.format(**fill) for a in args], "--no-cache"])
    err = capsys.readouterr().err
    assert rc == 2 and message.format(**fill) in err and len(err.strip().splitlines()) == 1, err


def test_json_and_out_need_the_right_mode(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_list.txt").write_text("a_rgb.png a_depth.npy\n")
    Image.new("RGB", (8, 8)).save(data / "a_rgb.png")
    with pytest.raises(SystemExit) as e:
        main(["--data", str(data), "--json", str(tmp_path / "a.json")])
    assert e.value.code == 2 and "Invalid value for --json: goes with --against NAME=DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--data", str(data), "--against", f"x={data}", "--out", str(tmp_path / "s.json")])
    assert e.value.code == 2 and "Invalid value for --out: writes a split; with --against" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "s.json").exists()


def test_threshold_is_inclusive_and_each_image_pairs_with_its_nearest():
    """Hand-made unit vectors: an eval row exactly at the threshold counts; its pair is its most
    similar training row; rows below do not count."""
    def unit(cos: float, axis: int = 0) -> np.ndarray:
        v = np.zeros(3, np.float32)
        v[axis], v[2] = cos, np.sqrt(1 - cos * cos)
        return v

    train = np.stack([unit(1.0, 0), unit(1.0, 1)])  # e0, e1
    evals = np.stack([unit(np.float32(0.9), 0), unit(0.95, 1), unit(0.89, 0)])
    found = duplicates(["a", "b", "c"], evals, ["t0", "t1"], train, threshold=float(np.float32(0.9)))
    assert found["near_duplicates"] == 2
    assert [p[:2] for p in found["pairs"]] == [["b", "t1"], ["a", "t0"]]


def test_blockwise_nearest_rows_match_dense(monkeypatch):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(37, 16)).astype(np.float32)
    k = rng.normal(size=(23, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    monkeypatch.setattr(split_graph, "BLOCK_ELEMENTS", 50)  # 2 rows per block
    sims, idx = nearest_rows(q, k)
    dense = q @ k.T
    assert (idx == dense.argmax(1)).all()
    np.testing.assert_allclose(sims, dense.max(1), rtol=1e-6)
