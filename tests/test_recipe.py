"""The training recipe's options are real: augmentation keeps image and depth aligned and never
blends invalid depth, the encoder gets its own learning rate in every architecture, the EMA is
what validation, checkpoints and predictions use, and flip TTA is the log-depth mean."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_nyu_like
from scipy.stats import spearmanr
from test_loop import TinyDepth, _batches

from grid.cli import command
from grid.cli.run import parse_args
from grid.experiment.plan import ExperimentError, check_plan
from grid.experiment.run import run
from grid.inference.predict import depth_maps, load_checkpoint_model
from trainables import augment
from trainables.config import ConfigError, TrialConfig
from trainables.data import DatasetSpec, Item
from trainables.dataset import DepthDataset, normalize
from trainables.loop import train_one_epoch
from trainables.models import MODELS, build_model, register_model
from trainables.models.registry import parameter_groups
from trainables.recipe import forward_log_tta, make_ema, make_optimizer, make_scheduler
from trainables.state import TrialState

evaluate_main = command("evaluate")
predict_main = command("predict")


def _position_pair(h: int = 48, w: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An image whose channels are its pixel coordinates and a depth that is a function of them,
    with an invalid (0) block; also the function, as depth of (x, y) in [0, 1]."""
    y, x = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    image = torch.stack([x, y, torch.zeros_like(x)])  # (3, H, W)
    depth = (1 + 2 * x + 3 * y)[None].clone()  # (1, H, W)
    depth[:, 10:20, 30:40] = 0.0
    return image, depth, torch.stack([x, y])


def test_the_random_geometry_keeps_depth_the_same_function_of_position() -> None:
    image, depth, _ = _position_pair()
    torch.manual_seed(0)
    moved = 0
    for _ in range(20):
        warped, wdepth = augment.random_geometry(image, depth)
        x, y = warped[0], warped[1]  # where in the source each output pixel came from
        valid = wdepth[0] > 0
        inside = valid & (x > 1 / 64) & (x < 1 - 1 / 64) & (y > 1 / 48) & (y < 1 - 1 / 48)
        # nearest (depth) and bilinear (image) sampling agree within one source pixel
        err = (wdepth[0] - (1 + 2 * x + 3 * y)).abs()[inside]
        assert inside.sum() > 0.7 * valid.numel() and float(err.max()) <= 2 / 64 + 3 / 48 + 1e-4
        moved += int(not torch.allclose(warped, image))
        # never interpolated: every output depth is one of the input's values, or 0 (invalid)
        assert set(wdepth.unique().tolist()) <= set(depth.unique().tolist())
    assert moved == 20


def test_a_rotation_turns_image_and_depth_together_and_an_invalid_block_stays_invalid() -> None:
    image, depth, _ = _position_pair()
    theta = augment.affine_theta(48, 64, angle_deg=10.0, zoom=1.0, shift=(0.0, 0.0))
    warped, wdepth = augment.warp_pair(image, depth, theta)
    invalid_src = depth[0] == 0
    # An output pixel is invalid exactly where it samples the invalid block (or outside).
    cols = (warped[0] * 64).long().clamp(0, 63)
    rows = (warped[1] * 48).long().clamp(0, 47)
    from_block = invalid_src[rows, cols]
    core = (warped[0] > 0.05) & (warped[0] < 0.95) & (warped[1] > 0.05) & (warped[1] < 0.95)
    agree = ((wdepth[0] == 0) == from_block)[core].float().mean()
    assert agree > 0.97  # all but the block's one-pixel rim, where nearest and floor round apart
    assert (wdepth[0] == 0).sum() >= invalid_src.sum() * 0.8


def test_standard_augmentation_in_the_dataset_keeps_the_pair_aligned(tmp_path: Path) -> None:
    """Through ``DepthDataset(augment="standard")`` with colour jitter on: a grey ramp image and a
    depth that grows with the ramp stay rank-correlated at every valid pixel, and the depth
    values are still the input's (or 0)."""
    from PIL import Image

    h, w = 60, 80
    ramp = np.tile(np.linspace(0.2, 0.6, w, dtype=np.float32), (h, 1))
    Image.fromarray((np.repeat(ramp[..., None], 3, axis=2) * 255).round().astype(np.uint8)).save(tmp_path / "a_rgb.png")
    depth_mm = np.round((1 + 4 * ramp) * 1000).astype(np.uint16)
    depth_mm[20:30, 10:20] = 0
    Image.fromarray(depth_mm).save(tmp_path / "a_depth.png")
    spec = DatasetSpec(root=tmp_path, format="pairs", depth_scale=1000.0)
    item = Item(name="a_rgb.png", rgb=tmp_path / "a_rgb.png", depth=tmp_path / "a_depth.png", depth_rel="a_depth.png")
    ds = DepthDataset([item], spec, size=(h, w), train=True, augment="standard")
    source_values = set((depth_mm / 1000.0).astype(np.float32).ravel().tolist())
    torch.manual_seed(3)
    flips = 0
    for _ in range(12):
        sample = ds[0]
        image, d = sample["image"].numpy(), sample["depth"][0].numpy()
        grey = image.mean(axis=0)
        valid = d > 0
        rho = spearmanr(grey[valid], d[valid]).statistic
        assert rho > 0.98, rho  # a mirrored or shifted depth alone would break the relation
        assert set(np.unique(d).tolist()) <= source_values | {0.0}
        flips += int(grey[:, :5].mean() > grey[:, -5:].mean())  # the bright side went left
    assert 0 < flips < 12  # both orientations occur
    plain = DepthDataset([item], spec, size=(h, w), train=True, augment="none")[0]
    assert torch.allclose(plain["image"], normalize(np.asarray(Image.open(item.rgb).convert("RGB"))))


BUILT_IN = sorted(n for n, e in MODELS.items() if e.builder.__module__.startswith("trainables.models."))


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_architecture_gives_its_encoder_its_own_learning_rate(name: str) -> None:
    model = build_model(name, size="tiny")
    encoder, rest = parameter_groups(model)
    assert encoder and rest
    names = dict(model.named_parameters())
    prefixes = MODELS[name].encoder
    enc_ids = {id(p) for k, p in names.items() if k.startswith(prefixes)}
    assert {id(p) for p in encoder} == enc_ids and len(encoder) + len(rest) == len(names)
    cfg = TrialConfig(arch=name, lr=1e-3, encoder_lr_mult=0.1, schedule="onecycle", epochs=2)
    optimizer = make_optimizer(model, cfg)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, pytest.approx(1e-4)]
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == enc_ids
    scheduler = make_scheduler(optimizer, cfg, updates_per_epoch=5)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        rest_lr, enc_lr = (g["lr"] for g in optimizer.param_groups)
        assert enc_lr == pytest.approx(rest_lr * 0.1)  # the schedule keeps the ratio


@pytest.fixture
def no_encoder_arch():
    """A user architecture registered without ``encoder=`` prefixes (removed again after)."""
    register_model("test_no_encoder", source="none (test)", description="a conv, no encoder declared")(
        lambda *, pretrained=False: TinyDepth())
    yield "test_no_encoder"
    del MODELS["test_no_encoder"]


def test_the_default_is_one_group_and_unknown_encoders_are_refused(no_encoder_arch: str) -> None:
    model = build_model("unet", size="tiny")
    assert len(make_optimizer(model, TrialConfig(arch="unet")).param_groups) == 1
    with pytest.raises(ValueError, match="declares no encoder"):
        parameter_groups(build_model(no_encoder_arch))
    with pytest.raises(ExperimentError, match="encoder_lr_mult needs an architecture"):
        check_plan([("x", {"arch": no_encoder_arch, "encoder_lr_mult": 0.5})])
    assert check_plan([("x", {"arch": no_encoder_arch})]) == 1  # the default asks for no encoder
    with pytest.raises(ConfigError, match="ema"):
        TrialConfig(arch="unet", ema=1.0)
    with pytest.raises(ConfigError, match="augment"):
        TrialConfig(arch="unet", augment="heavy")


def test_warmup_ramps_linearly_then_follows_the_cosine() -> None:
    model = TinyDepth()
    cfg = TrialConfig(arch="unet", lr=1.0, epochs=4, warmup_epochs=1, schedule="cosine")
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = make_scheduler(optimizer, cfg, updates_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[5] == pytest.approx(0.01 + 0.99 * 0.5)
    assert lrs[10] == pytest.approx(1.0) and lrs[25] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 30)))


def test_the_ema_follows_its_formula_and_differs_from_the_raw_weights() -> None:
    cfg = TrialConfig(arch="unet", lr=0.1, accum_steps=1, ema=0.9, image_size=(8, 12))
    model = TinyDepth()
    ema = make_ema(model, cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    raw, expected = [], None
    optimizer.register_step_post_hook(lambda *_: raw.append({k: v.clone() for k, v in model.state_dict().items()}))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    train_one_epoch(TrialState(model, optimizer, scaler, ema=ema), _batches(3), cfg, torch.device("cpu"))
    for t, weights in enumerate(raw, start=1):
        decay = 0.0 if t == 1 else min(0.9, 1 - (1 + (t - 1)) ** -0.75)  # timm's warmup
        expected = weights if expected is None else {k: decay * expected[k] + (1 - decay) * w
                                                     for k, w in weights.items()}
    for key, value in ema.module.state_dict().items():
        assert torch.allclose(value, expected[key], atol=1e-6), key
        assert not torch.allclose(value, model.state_dict()[key])  # after 3 steps: not the raw weights


def test_tta_is_the_log_depth_mean_of_the_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_unet", size="tiny").eval()
    with torch.no_grad():  # a trained-looking head: predictions that vary across the image
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    images = torch.randn(2, 3, 32, 48)
    with torch.inference_mode():
        plain = model.forward_log(images)
        mirror = model.forward_log(images.flip(-1)).flip(-1)
        expected = torch.exp(torch.nn.functional.interpolate((plain + mirror) / 2, size=(40, 60),
                                                             mode="bilinear", align_corners=False))
        maps = depth_maps(model, images, [(40, 60), (40, 60)], tta=True)
        no_tta = depth_maps(model, images, [(40, 60), (40, 60)], tta=False)
        assert torch.equal(forward_log_tta(model, images, False), plain)
    for i in range(2):
        np.testing.assert_allclose(maps[i], expected[i, 0].numpy(), rtol=1e-5)
        assert np.abs(np.log(maps[i]) - np.log(no_tta[i])).max() > 1e-2


@pytest.fixture(scope="module")
def nyu_like(tmp_path_factory) -> Path:
    return write_nyu_like(tmp_path_factory.mktemp("data") / "nyu", scenes=5, views=3, seed=6)


def _si_rmse(capsys, *argv) -> float:
    capsys.readouterr()
    assert evaluate_main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("si_rmse")))


def test_a_trial_with_every_option_validates_saves_and_predicts_with_its_ema_and_tta(
        ray_session, nyu_like: Path, tmp_path: Path, capsys) -> None:
    exp = run(parse_args([
        "--space", "smoke", "--arch", "mobilenet_unet", "--data", str(nyu_like), "--format", "pairs",
        "--depth-scale", "1000", "--results", str(tmp_path / "results"), "--gpus-per-trial", "0",
        "--verbose", "0", "--set", "max_val_images=0", "--set", "max_steps_per_epoch=4", "--set", "epochs=2",
        "--image-size", "48x64", "--set", "augment=standard", "--set", "encoder_lr_mult=0.1",
        "--set", "schedule=onecycle", "--set", "ema=0.9", "--set", "tta=true", "--set", "lr=0.003"]))
    board = pd.read_csv(exp / "leaderboard.csv")
    assert list(board.status) == ["finished"] and bool(board.tta[0])
    assert "| tta |" in (exp / "leaderboard.md").read_text()
    state = torch.load(board.checkpoint[0], map_location="cpu", weights_only=True)
    differ = [k for k in state["model"] if not torch.equal(state["model"][k], state["raw_model"][k])]
    assert differ, "the checkpoint's model must hold the EMA, not the raw weights"
    model, info = load_checkpoint_model(board.checkpoint[0])
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())

    split = json.loads((exp / "split.json").read_text())
    pairs = dict(line.split() for line in (nyu_like / "pairs.txt").read_text().splitlines())
    (nyu_like / "val.txt").write_text("".join(f"{rgb} {pairs[rgb]}\n" for rgb in split["val"]))
    scores = {}
    for flag in ("", "--no-tta"):
        preds = tmp_path / f"preds{flag}"
        argv = ["--experiment", str(exp), "--input", str(nyu_like / "val.txt"), "--out", str(preds),
                "--no-png", "--workers", "0", *([flag] if flag else [])]
        assert predict_main(argv) == 0
        scores[flag] = _si_rmse(capsys, "--experiment", exp, "--pred", preds, "--data", nyu_like, "--list", "val.txt")
    # Predictions take the trial's TTA and its EMA weights: they reproduce validation exactly.
    assert scores[""] == pytest.approx(board.si_rmse[0], abs=1e-4)
    assert abs(scores["--no-tta"] - board.si_rmse[0]) > 1e-5
