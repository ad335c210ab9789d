"""The trainable's helpers on tiny real data: the bundle holds the split's sides, accumulation
applies each group's mean-loss gradient (the last, partial group too), the schedule counts
those updates, and validation scores at the targets' native size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from grid.experiment.prepare import prepare_bundle
from grid.synth import generate
from trainables.config import TrialConfig
from trainables.data import DatasetSpec, load_depth
from trainables.loop import evaluate, make_loaders, train_one_epoch
from trainables.losses import si_log_loss
from trainables.metrics import MetricAccumulator
from trainables.models.base import DepthModel
from trainables.recipe import updates_per_epoch
from trainables.state import TrialState


class TinyDepth(DepthModel):
    """One conv plus a fixed left-to-right ramp: predictions vary across the image, so the
    size at which they are scored matters. No BatchNorm: steps are order-independent."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.arch_config = {"name": "tiny", "kwargs": {}}

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, H, W)
        ramp = torch.linspace(0.0, 1.0, x.shape[-1]).view(1, 1, 1, -1)
        return self.conv(x) + ramp


def test_the_bundle_holds_exactly_the_split_sides(tmp_path: Path) -> None:
    data = generate(tmp_path / "scenes", scenes=4, views=3, size=(40, 56), seed=4)
    bundle, split = prepare_bundle(DatasetSpec(root=data), tmp_path / "results")
    assert [it.name for it in bundle.train] == list(split.train)
    assert [it.name for it in bundle.val] == list(split.val)
    assert split.val and not {it.name for it in bundle.train} & {it.name for it in bundle.val}


def _batches(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randn(2, 3, 8, 12, generator=g),
             "depth": torch.rand(2, 1, 8, 12, generator=g) * 4 + 0.5} for _ in range(n)]


def test_accumulation_applies_each_groups_mean_loss_gradient() -> None:
    cfg = TrialConfig(arch="unet", accum_steps=2, lam=0.5, image_size=(8, 12))
    batches = _batches(5)  # groups of 2, 2 and a last one of 1
    model = TinyDepth()
    reference = TinyDepth()
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    train_one_epoch(TrialState(model, optimizer, scaler), batches, cfg, torch.device("cpu"))
    assert len(steps) == 3 == updates_per_epoch(len(batches), cfg)

    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for group in (batches[0:2], batches[2:4], batches[4:5]):
        ref_opt.zero_grad()
        losses = [si_log_loss(reference.forward_log(b["image"]), b["depth"], cfg.lam) for b in group]
        torch.stack(losses).mean().backward()  # the group's mean loss, whatever its size
        ref_opt.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_validation_scores_at_native_size_and_honours_max_val_images(tmp_path: Path) -> None:
    data = generate(tmp_path / "scenes", scenes=5, views=3, size=(40, 56), seed=5)
    bundle, _ = prepare_bundle(DatasetSpec(root=data), tmp_path / "results")
    cfg = TrialConfig(arch="unet", image_size=(16, 24), batch_size=2, max_val_images=2, num_workers=0)
    _, val_loader = make_loaders(cfg, bundle)
    assert len(val_loader.dataset) == 2
    model = TinyDepth().eval()
    metrics, _ = evaluate(model, val_loader, cfg, torch.device("cpu"))

    acc = MetricAccumulator()
    for sample in val_loader.dataset:
        target = load_depth(bundle.val[sample["index"]], bundle.spec)  # (40, 56): native
        with torch.no_grad():
            log_pred = model.forward_log(sample["image"][None])  # (1, 1, 16, 24)
        pred = torch.nn.functional.interpolate(log_pred, size=target.shape, mode="bilinear",
                                               align_corners=False).exp()[0, 0].numpy()
        acc.update(pred, target)
    expected = acc.result()
    assert sample["image"].shape[-2:] == (16, 24) and target.shape == (40, 56)
    for name, value in expected.items():
        assert np.isclose(metrics[name], value, rtol=1e-5), name


def test_the_training_target_is_resized_on_the_image_grid() -> None:
    """A depth ramp and the same ramp as an image, resized 4x down: the target's pixels sit at
    the image's sample positions (within the half input pixel nearest sampling allows), not a
    scale/2 shift away as plain ``nearest`` (which floors ``j * scale``) puts them."""
    from trainables.dataset import resize_depth, resize_image

    ramp = torch.arange(64, dtype=torch.float32).expand(1, 16, 64)  # value = column index
    image = resize_image(ramp.expand(3, 16, 64).contiguous(), (4, 16))[0]  # (4, 16)
    depth = resize_depth(ramp.clone(), (4, 16))[0]
    # Interior columns: antialiasing pulls the image's border pixels inwards.
    assert (depth - image)[:, 1:-1].abs().max() <= 0.5 + 1e-4
