"""Evaluation protocols (``trainables.protocols``) scored through the real ``depth-grid evaluate``
and the trial's validation, against an independent numpy reference written out below.

The frames are built so that every part of a protocol moves the number: predictions outside
the crop are wrong by a factor 3, some ground truth lies beyond the cap, some predictions
overshoot it, and the images differ in scale (per-image and pooled means differ). Each test
also computes the reference *without* one part and checks that the command's number is not
that one: dropping the crop, the cap or the alignment from the code would fail it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grid.cli import command
from trainables.data import DatasetSpec, index_dataset

main = command("evaluate")

# ---- the reference: BTS's eval_with_pngs.py / the toolbox's metrics, written out again -------
CAPS = {"none": None, "nyu": (1e-3, 10.0), "kitti_eigen": (1e-3, 80.0), "kitti_garg": (1e-3, 80.0)}


def ref_region(shape: tuple[int, int], protocol: str) -> np.ndarray:
    h, w = shape
    m = np.zeros(shape, bool)
    if protocol == "nyu":
        m[45:471, 41:601] = True
    elif protocol == "kitti_garg":
        m[int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
    elif protocol == "kitti_eigen":
        m[int(0.3324324 * h):int(0.91351351 * h), int(0.0359477 * w):int(0.96405229 * w)] = True
    else:
        m[:] = True
    return m


def ref_pixels(pred, gt, protocol, *, crop=True, cap=True, align="none", space="depth"):
    lohi = CAPS[protocol] if cap else None
    valid = np.isfinite(gt) & (gt > 1e-6)
    if lohi:
        valid &= (gt > lohi[0]) & (gt < lohi[1])
    if crop:
        valid &= ref_region(gt.shape, protocol)
    p, t = np.maximum(pred[valid].astype(np.float64), 1e-6), gt[valid].astype(np.float64)
    if align == "median":
        p = p * np.median(t) / np.median(p)
    elif align == "lstsq" and space == "depth":
        s, b = np.polyfit(p, t, 1)
        p = s * p + b
    elif align == "lstsq" and space == "inverse":
        s, b = np.polyfit(1 / p, 1 / t, 1)
        p = 1 / np.maximum(s / p + b, 1 / lohi[1] if lohi else 1e-6)
    return (np.clip(p, *lohi) if lohi else np.maximum(p, 1e-6)), t


def ref_metrics(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    d = np.log(p) - np.log(t)
    ratio = np.maximum(p / t, t / p)
    return {"si_rmse": np.sqrt(np.mean((d - d.mean()) ** 2)), "silog": 100 * np.sqrt(np.mean(d**2) - np.mean(d) ** 2),
            "abs_rel": np.mean(np.abs(p - t) / t), "sq_rel": np.mean((p - t) ** 2 / t),
            "rmse": np.sqrt(np.mean((p - t) ** 2)), "rmse_log": np.sqrt(np.mean(d**2)),
            "log10": np.mean(np.abs(np.log10(p) - np.log10(t))), "delta1": np.mean(ratio < 1.25)}


def ref_score(preds, gts, protocol, *, pooled=False, **kw) -> dict[str, float]:
    pairs = [ref_pixels(p, g, protocol, **kw) for p, g in zip(preds, gts, strict=True)]
    pairs = [(p, t) for p, t in pairs if t.size]
    if pooled:
        return ref_metrics(np.concatenate([p for p, _ in pairs]), np.concatenate([t for _, t in pairs]))
    rows = [ref_metrics(p, t) for p, t in pairs]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# ---- NYU-like and KITTI-like frames with known depth ------------------------------------------
def _ramp(h: int, w: int, lo: float, hi: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return lo + (hi - lo) * (0.7 * yy / (h - 1) + 0.3 * xx / (w - 1))


def nyu_frames(root: Path, n: int = 3) -> Path:
    """Pairs layout, 480x640, 16-bit PNG depth in mm; depth 1..12 m (beyond the 10 m cap at the
    bottom), a few invalid zeros."""
    rng = np.random.default_rng(1)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    lines = []
    for i in range(n):
        depth = _ramp(480, 640, 1.0 + 0.5 * i, 12.0) * rng.uniform(0.95, 1.05, (480, 640))
        depth[::37, ::41] = 0.0
        Image.fromarray((depth * 1000).astype(np.uint16)).save(root / f"depth/{i:04d}.png")
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(root / f"rgb/{i:04d}.png")
        lines.append(f"rgb/{i:04d}.png depth/{i:04d}.png")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


KITTI_FRAMES = [("2011_09_26_drive_0001_sync", "image_02", "0000000005"),
                ("2011_09_26_drive_0001_sync", "image_03", "0000000005"),
                ("2011_09_28_drive_0002_sync", "image_02", "0000000011")]


def kitti_frames(root: Path, size: tuple[int, int] = (60, 200)) -> Path:
    """KITTI's own layout: raw images under <date>/<drive>/image_0X/data/, annotated depth under
    train/<drive>/proj_depth/groundtruth/image_0X/ as uint16 PNG = metres * 256, 0 = no LiDAR
    point (70% of the pixels); depth 2..100 m, beyond the 80 m cap near the top and in a block
    inside the crops."""
    rng = np.random.default_rng(2)
    h, w = size
    for i, (drive, camera, frame) in enumerate(KITTI_FRAMES):
        rgb = root / drive[:10] / drive / camera / "data" / f"{frame}.png"
        gt = root / "train" / drive / "proj_depth" / "groundtruth" / camera / f"{frame}.png"
        rgb.parent.mkdir(parents=True, exist_ok=True)
        gt.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(rgb)
        depth = _ramp(h, w, 100.0 - 5 * i, 2.0)  # far at the top, as a road scene
        depth[int(0.5 * h):int(0.6 * h), int(0.4 * w):int(0.6 * w)] = 90.0 + i  # far points inside both crops
        depth[rng.uniform(size=(h, w)) < 0.7] = 0.0
        Image.fromarray(np.round(depth * 256).astype(np.uint16)).save(gt)
    return root


def ground_truth(spec: DatasetSpec) -> list[np.ndarray]:
    """Each item's depth read with PIL alone (not the project's loader): value / scale, float32."""
    return [np.asarray(Image.open(it.depth)).astype(np.float32) / np.float32(spec.depth_scale)
            for it in index_dataset(spec)]


def write_preds(pred_dir: Path, spec: DatasetSpec, fn) -> list[np.ndarray]:
    preds = []
    for i, (item, gt) in enumerate(zip(index_dataset(spec), ground_truth(spec), strict=True)):
        pred = fn(gt.astype(np.float64), i).astype(np.float32)
        out = pred_dir / item.pred_name
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, pred)
        preds.append(pred)
    return preds


def score(tmp_path: Path, capsys, *argv) -> dict:
    out = tmp_path / f"m{len(list(tmp_path.glob('m*.json')))}.json"
    code = main([str(a) for a in (*argv, "--json", out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(out.read_text())


def _bad_outside_crop(gt: np.ndarray, i: int) -> np.ndarray:
    """Scale (1 + 0.2 i) with multiplicative noise inside the Eigen crop, 3x wrong outside it;
    1.3x (beyond the 10 m cap where gt > 7.7 m) in a band of rows."""
    rng = np.random.default_rng(10 + i)
    pred = gt * (1 + 0.2 * i) * rng.uniform(0.85, 1.15, gt.shape)
    pred[300:420] = gt[300:420] * 1.3
    inside = ref_region(gt.shape, "nyu")
    return np.where(inside, pred, 3.0 * gt + 1.0)


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > 1e-3 * max(abs(a), abs(b))


def test_nyu_protocol_crop_cap_and_means(tmp_path: Path, capsys) -> None:
    data = nyu_frames(tmp_path / "nyu")
    spec = DatasetSpec.detect(data, depth_scale=1000.0)
    gts = ground_truth(spec)
    preds = write_preds(tmp_path / "p", spec, _bad_outside_crop)
    base = ("--pred", tmp_path / "p", "--data", data, "--depth-scale", "1000")
    got = score(tmp_path, capsys, *base, "--protocol", "nyu")
    ref = ref_score(preds, gts, "nyu")
    assert got["protocol"] == "nyu" and got["mean"] == "image" and got["count"] == 3
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-9), k
    assert got["silog"] == pytest.approx(100 * got["si_rmse"], rel=1e-6)  # BTS's SILog x100
    # every part moves the number: without the crop, without the cap
    assert _differs(got["si_rmse"], ref_score(preds, gts, "nyu", crop=False)["si_rmse"])
    assert _differs(got["rmse"], ref_score(preds, gts, "nyu", cap=False)["rmse"])
    assert _differs(got["abs_rel"], ref_score(preds, gts, "nyu", cap=False)["abs_rel"])
    # pooled: one set of pixels; differs from the per-image mean here (scales differ per image)
    pooled = score(tmp_path, capsys, *base, "--protocol", "nyu", "--mean", "pooled")
    ref_pooled = ref_score(preds, gts, "nyu", pooled=True)
    assert pooled["mean"] == "pooled"
    for k, v in ref_pooled.items():
        assert pooled[k] == pytest.approx(v, rel=1e-7), k
    assert _differs(pooled["si_rmse"], got["si_rmse"])
    # the data read already cropped (--crop eigen): the same pixels, the same numbers
    cropped = score(tmp_path, capsys, *base, "--protocol", "nyu", "--crop", "eigen")
    assert cropped["si_rmse"] == pytest.approx(got["si_rmse"], rel=1e-12)
    assert cropped["rmse"] == pytest.approx(got["rmse"], rel=1e-12)


def test_protocol_none_is_todays_scoring(tmp_path: Path, capsys) -> None:
    from grid.inference.evaluate import evaluate

    data = nyu_frames(tmp_path / "nyu", n=2)
    spec = DatasetSpec.detect(data, depth_scale=1000.0)
    preds = write_preds(tmp_path / "p", spec, _bad_outside_crop)
    default = evaluate(tmp_path / "p", spec)
    explicit = score(tmp_path, capsys, "--pred", tmp_path / "p", "--data", data, "--depth-scale", "1000",
                     "--protocol", "none")
    ref = ref_score(preds, ground_truth(spec), "none")
    for k, v in ref.items():
        assert default[k] == explicit[k] == pytest.approx(v, rel=1e-9), k  # byte-equal to each other
    assert default["protocol"] == "none" and default["align"] == "none"


@pytest.mark.parametrize("protocol", ["kitti_garg", "kitti_eigen"])
def test_kitti_layout_and_crops(tmp_path: Path, capsys, protocol: str) -> None:
    data = kitti_frames(tmp_path / "kitti")
    spec = DatasetSpec.detect(data)  # detected from its folders; depth PNG / 256
    assert spec.format == "kitti" and spec.depth_scale == 256.0
    items = index_dataset(spec)
    assert [it.depth_rel for it in items] == sorted(
        f"train/{d}/proj_depth/groundtruth/{c}/{f}.png" for d, c, f in KITTI_FRAMES)
    assert all(it.rgb.is_file() and "/data/" in str(it.rgb) for it in items)
    gts = ground_truth(spec)

    def pred(gt: np.ndarray, i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        p = _ramp(*gt.shape, 90.0, 2.5) * rng.uniform(0.8, 1.2, gt.shape) * (1 + 0.3 * i)
        return np.where(ref_region(gt.shape, protocol), p, 5.0 * p)

    preds = write_preds(tmp_path / "p", spec, pred)
    got = score(tmp_path, capsys, "--pred", tmp_path / "p", "--data", data, "--protocol", protocol)
    ref = ref_score(preds, gts, protocol)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-9), k
    other = "kitti_eigen" if protocol == "kitti_garg" else "kitti_garg"
    assert _differs(got["si_rmse"], ref_score(preds, gts, protocol, crop=False)["si_rmse"])
    assert _differs(got["rmse"], ref_score(preds, gts, protocol, cap=False)["rmse"])
    assert _differs(got["abs_rel"], ref_score(preds, gts, other)["abs_rel"])  # the two crops are not the same


def test_kitti_images_beside_the_drive_a_missing_image_and_a_list_file(tmp_path: Path) -> None:
    from trainables.data import DataError

    data = kitti_frames(tmp_path / "kitti")
    moved = data / KITTI_FRAMES[2][0] / KITTI_FRAMES[2][1] / "data"  # <drive>/image_0X/data, no date folder
    moved.parent.mkdir(parents=True)
    (data / "2011_09_28" / KITTI_FRAMES[2][0] / KITTI_FRAMES[2][1] / "data").rename(moved)
    items = index_dataset(DatasetSpec.detect(data))
    assert items[-1].rgb == moved / f"{KITTI_FRAMES[2][2]}.png"
    (moved / f"{KITTI_FRAMES[2][2]}.png").unlink()
    with pytest.raises(DataError, match=f"{KITTI_FRAMES[2][2]}.png: no RGB image found"):
        index_dataset(DatasetSpec.detect(data))
    first = items[0]  # a list file of the rows to read, relative to the folder, is read instead
    (data / "kitti_files.txt").write_text(f"{first.name} {first.depth_rel}\n")
    spec = DatasetSpec.detect(data)
    assert spec.format == "kitti" and [it.depth_rel for it in index_dataset(spec)] == [first.depth_rel]


@pytest.mark.parametrize(("align", "space"), [("median", "depth"), ("lstsq", "depth"), ("lstsq", "inverse")])
def test_alignment_of_relative_depth(tmp_path: Path, capsys, align: str, space: str) -> None:
    data = nyu_frames(tmp_path / "nyu", n=2)
    spec = DatasetSpec.detect(data, depth_scale=1000.0)
    gts = ground_truth(spec)

    def relative(gt: np.ndarray, i: int) -> np.ndarray:  # affine in the chosen space, plus noise
        rng = np.random.default_rng(i)
        noisy = gt * rng.uniform(0.9, 1.1, gt.shape)
        if space == "inverse":
            return 1.0 / (0.3 / np.maximum(noisy, 0.5) + 0.05 * (i + 1))
        return 0.2 * (i + 1) * noisy + 0.7

    preds = write_preds(tmp_path / "p", spec, relative)
    got = score(tmp_path, capsys, "--pred", tmp_path / "p", "--data", data, "--protocol", "nyu",
                "--depth-scale", "1000", "--align", align, "--align-space", space)
    ref = ref_score(preds, gts, "nyu", align=align, space=space)
    assert got["align"] == align and got.get("align_space", "depth") == space
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-7, abs=1e-12), k
    unaligned = ref_score(preds, gts, "nyu")
    assert got["abs_rel"] < 0.5 * unaligned["abs_rel"]  # the alignment is doing the work
    assert _differs(got["rmse"], unaligned["rmse"])
    if align == "lstsq":  # scale and shift fit better than a scale alone, in their own space
        assert _differs(got["abs_rel"], ref_score(preds, gts, "nyu", align="median")["abs_rel"])


def test_validation_scores_under_the_trial_protocol(tmp_path: Path) -> None:
    """The trial's own validation (``trainables.loop.evaluate``) with ``protocol`` and ``align``."""
    from trainables.config import TrialConfig
    from trainables.loop import eval_loader, evaluate

    data = kitti_frames(tmp_path / "kitti")
    spec = DatasetSpec.detect(data)
    ramp = _ramp(60, 200, 70.0, 3.0)

    class Ramp(torch.nn.Module):  # a fixed prediction, so that the reference knows it
        def forward_log(self, image: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.log(ramp)).float().expand(image.shape[0], 1, *ramp.shape)

    cfg = TrialConfig(arch="ramp", image_size=(60, 200), batch_size=2, num_workers=0, protocol="kitti_garg",
                      align="median")
    metrics, _ = evaluate(Ramp(), eval_loader(cfg, index_dataset(spec), spec), cfg, torch.device("cpu"))
    preds = [ramp.astype(np.float32)] * len(KITTI_FRAMES)
    ref = ref_score(preds, ground_truth(spec), "kitti_garg", align="median")
    for k, v in ref.items():
        assert metrics[k] == pytest.approx(v, rel=1e-5), k
    assert _differs(metrics["si_rmse"], ref_score(preds, ground_truth(spec), "none")["si_rmse"])


def test_unknown_protocol_is_one_line(tmp_path: Path, capsys) -> None:
    from grid.experiment.config import RunConfig
    from grid.experiment.eval_data import parse_eval_data
    from trainables.config import ConfigError

    data = nyu_frames(tmp_path / "nyu", n=1)
    (tmp_path / "p").mkdir()
    code = main(["--pred", str(tmp_path / "p"), "--data", str(data), "--protocol", "nyu2"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown protocol 'nyu2'" in err and "kitti_garg" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="unknown protocol 'kiti'"):
        parse_eval_data(f"k={data}:protocol=kiti")
    assert parse_eval_data(f"k={data}:format=pairs,protocol=nyu").protocol == "nyu"
    with pytest.raises(ConfigError, match="--protocol"):
        RunConfig(protocol="bts")
    assert RunConfig(protocol="nyu", align="median").set == {"protocol": "nyu", "align": "median"}
    assert "protocol" not in RunConfig().set  # recorded only when given: old experiments still resume


def test_an_eval_set_scores_under_its_own_protocol(tmp_path: Path) -> None:
    """``--eval-data NAME=DIR:protocol=P``: the set's protocol, not the run's, with the run's alignment."""
    from grid.experiment.eval_data import parse_eval_data, resolve_eval_sets
    from trainables.config import TrialConfig
    from trainables.eval_sets import score_eval_sets

    data = kitti_frames(tmp_path / "kitti")
    (kitti_set,) = resolve_eval_sets([parse_eval_data(f"road={data}:protocol=kitti_eigen")])
    assert kitti_set.protocol == "kitti_eigen" and kitti_set.spec.format == "kitti"
    ramp = _ramp(60, 200, 20.0, 3.0) ** 1.4  # not affine in the ground truth's ramp: lstsq leaves an error

    class Ramp(torch.nn.Module):
        def forward_log(self, image: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.log(ramp)).float().expand(image.shape[0], 1, *ramp.shape)

    cfg = TrialConfig(arch="ramp", image_size=(60, 200), batch_size=2, num_workers=0, align="lstsq", align_space="depth")
    scores = score_eval_sets((kitti_set,), Ramp(), {"si_rmse": 0.1}, cfg, torch.device("cpu"), epoch=0)
    preds = [ramp.astype(np.float32)] * len(KITTI_FRAMES)
    ref = ref_score(preds, ground_truth(kitti_set.spec), "kitti_eigen", align="lstsq")
    for k, v in ref.items():
        assert scores[f"{k}@road"] == pytest.approx(v, rel=1e-5), k
    assert _differs(scores["abs_rel@road"], ref_score(preds, ground_truth(kitti_set.spec), "none",
                                                      align="lstsq")["abs_rel"])


def test_a_run_validates_under_its_protocol_and_records_it(ray_session, tmp_path: Path, capsys) -> None:
    """``depth-grid run --protocol kitti_garg --align median``: every trial validates so, the
    leaderboard says so beside ``silog``, and ``evaluate --experiment`` takes the protocol over."""
    import pandas as pd

    from grid.cli.run import parse_args
    from grid.experiment.run import run
    from grid.synth import generate

    scenes = generate(tmp_path / "scenes", scenes=4, views=2, size=(40, 56), seed=3)
    exp = run(parse_args(["--space", "smoke", "--data", str(scenes), "--results", str(tmp_path / "r"),
                          "--gpus-per-trial", "0", "--verbose", "0", "--protocol", "kitti_garg", "--align", "median"]))
    board = pd.read_csv(exp / "leaderboard.csv")
    assert (board.status == "finished").all(), board[["arch", "status", "error"]]
    assert set(board["protocol"]) == {"kitti_garg"} and set(board["align"]) == {"median"}
    assert np.allclose(board.silog, 100 * board.si_rmse, rtol=1e-6)
    md = (exp / "leaderboard.md").read_text()
    assert "| si_rmse | silog |" in md and "| protocol | align |" in md and "| kitti_garg | median |" in md
    studies = json.loads((exp / "experiment.json").read_text())["signature"]["studies"]
    assert all(space["protocol"] == "kitti_garg" and space["align"] == "median" for _, space in studies)
    from grid.experiment.record import Experiment
    from grid.inference.evaluate import experiment_protocol

    assert experiment_protocol(Experiment.load(exp.path)) == "kitti_garg"
    capsys.readouterr()
    assert command("leaderboard")([str(exp.path), "--reference"]) == 0
    out = capsys.readouterr().out
    assert "Against published numbers" in out and "kitti_garg" in out
    worst = max(board.abs_rel)  # far from trained: above both published KITTI rows
    assert f"{worst:.4f} | 3 of 3: above every one (worst published: DPT ViT-B 0.073)" in out


def test_reference_placement_and_its_table_in_the_docs() -> None:
    from grid.experiment.reference import REFERENCES, place

    assert place(0.1, "nyu") == "4 of 7: between NeWCRFs Swin-L 0.095 and BTS ResNet-50 0.114"
    assert place(0.05, "nyu").startswith("1 of 7: below every one (best published: Depth Anything V1")
    assert place(0.2, "nyu") == "7 of 7: above every one (worst published: DPT ViT-B 0.135)"
    assert place(0.1, "none").startswith("no published numbers under protocol none")
    docs = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    table = docs[docs.index("## Published reference numbers"):]
    for ref in REFERENCES:  # the same numbers as the docs' table, row by row
        rows = [line for line in table.splitlines() if line.startswith(f"| {ref.model.split(' (')[0].split(' ')[0]}")]
        assert any(f"| {ref.abs_rel:.3f} |" in line for line in rows), ref
