"""Hugging Face families (SegFormer, Mask2Former): real loading of snapshots, and their heads.

Shape, positivity, gradients and save/load of every architecture are in ``test_models.py``;
here tiny HF models are written with ``save_pretrained`` (the layout of the hub checkpoints)
and loaded back through ``build_model(..., pretrained=<that folder>)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hf_snapshots import NO_BN_COUNTERS, SWIN_NORM, save_snapshot
from transformers import (
    Mask2FormerForUniversalSegmentation,
    SegformerForSemanticSegmentation,
    SegformerModel,
)
from transformers import logging as hf_logging

from trainables.models import PretrainedWeightsError, build_model
from trainables.models.mask2former import mask2former_config
from trainables.models.segformer import SEGFORMER_VARIANTS, segformer_config

hf_logging.set_verbosity_error()  # the load reports are expected here (e.g. a rebuilt classifier)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Tiny random HF models saved like the hub ones: folder and the state dict written."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(123)
    seg = SegformerForSemanticSegmentation(segformer_config("tiny", num_labels=5))  # 5 "classes"
    save_snapshot(seg, root / "segformer", drop=(NO_BN_COUNTERS,))
    enc = SegformerModel(segformer_config("tiny"))  # encoder only, like nvidia/mit-b*
    save_snapshot(enc, root / "mit")
    m2f = Mask2FormerForUniversalSegmentation(mask2former_config("tiny"))  # the COCO checkpoint's class
    save_snapshot(m2f, root / "mask2former", drop=(SWIN_NORM,))
    m2f_saved = {k: v for k, v in m2f.model.state_dict().items() if SWIN_NORM not in k}
    return {"segformer": (root / "segformer", seg.state_dict()),
            "mit": (root / "mit", enc.state_dict()),
            "mask2former": (root / "mask2former", m2f_saved)}


def _assert_loaded(loaded: dict, saved: dict, fresh: dict) -> None:
    """Every loaded tensor equals the saved one; a random init differs from the saved weights
    (in most weight tensors: some, like deformable-attention offsets, start at constants)."""
    assert loaded, "nothing to compare"
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key
    weights = [k for k in loaded if loaded[k].dim() > 1]
    differ = [k for k in weights if not torch.equal(fresh[k], saved[k])]
    assert weights and len(differ) > 0.6 * len(weights), (len(differ), len(weights))


def test_segformer_loads_encoder_and_decode_head(snapshots):
    folder, saved = snapshots["segformer"]
    model = build_model("segformer_b4", size="tiny", pretrained=folder)
    fresh = build_model("segformer_b4", size="tiny").net.state_dict()
    kept = {k: v for k, v in model.net.state_dict().items() if "classifier" not in k}
    assert any(k.startswith("decode_head.linear_fuse") for k in kept)  # the MLP head is kept
    _assert_loaded(kept, saved, fresh)
    classifier = model.net.decode_head.classifier
    assert classifier.out_channels == 1 and saved["decode_head.classifier.weight"].shape[0] == 5
    # from_pretrained returns eval mode (no dropout, frozen BN statistics); training needs train
    assert all(module.training for module in model.modules())


def test_segformer_unet_loads_encoder_from_either_snapshot(snapshots):
    fresh = {k: v for k, v in build_model("segformer_unet", size="tiny").encoder.state_dict().items()}
    for name, strip in (("segformer", "segformer."), ("mit", "")):
        folder, saved = snapshots[name]
        saved = {k.removeprefix(strip): v for k, v in saved.items()}
        model = build_model("segformer_unet", size="tiny", pretrained=folder)
        _assert_loaded(model.encoder.state_dict(), saved, fresh)


def test_mask2former_loads_base_model_without_unused_heads(snapshots):
    folder, saved = snapshots["mask2former"]
    model = build_model("mask2former_swin", size="tiny", pretrained=folder)
    loaded = model.net.state_dict()
    fresh = build_model("mask2former_swin", size="tiny").net.state_dict()
    _assert_loaded(loaded, saved, fresh)
    assert set(loaded) == set(saved)  # every weight of the base model, none left random
    assert not any("class_predictor" in k for k, _ in model.named_parameters())


@pytest.mark.parametrize("name", ["segformer_b4", "segformer_unet", "mask2former_swin"])
def test_hf_loaded_model_round_trips_through_save_pretrained(name, snapshots, tmp_path):
    folder = snapshots["mask2former" if name.startswith("mask2") else "segformer"][0]
    model = build_model(name, size="tiny", pretrained=folder).eval()
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path / "saved")
    again = build_model(name, pretrained=tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.equal(again(x), expected)


def test_snapshot_that_does_not_fit_is_refused(snapshots, tmp_path):
    seg, mit, m2f = (snapshots[k][0] for k in ("segformer", "mit", "mask2former"))
    with pytest.raises(PretrainedWeightsError, match="hidden_sizes"):
        build_model("segformer_b4", pretrained=seg)  # a tiny snapshot is not a B4
    with pytest.raises(PretrainedWeightsError, match="not in the snapshot"):
        build_model("segformer_b4", size="tiny", pretrained=mit)  # no decode head to keep
    with pytest.raises(PretrainedWeightsError, match="model_type"):
        build_model("mask2former_swin", size="tiny", pretrained=seg)
    with pytest.raises(PretrainedWeightsError, match="embed_dim"):
        build_model("mask2former_swin", pretrained=m2f)
    with pytest.raises(PretrainedWeightsError, match="config.json"):
        build_model("segformer_unet", size="tiny", pretrained=tmp_path)  # an empty folder
    with pytest.raises(PretrainedWeightsError, match="tiny"):
        build_model("segformer_b5", size="tiny", pretrained=True)
    with pytest.raises(ValueError, match="b0, b1"):
        build_model("segformer_unet", encoder="b9")


def test_pretrained_true_offline_names_the_hub_id_and_how_to_get_it(tmp_path):
    # A fresh interpreter: huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when imported.
    script = textwrap.dedent("""
        import json
        from trainables.models import PretrainedWeightsError, build_model
        out = {}
        for name, kw in [("segformer_b4", {}), ("segformer_b5", {}), ("segformer_unet", {"encoder": "b2"}),
                         ("mask2former_swin", {})]:
            try:
                build_model(name, pretrained=True, **kw)
                out[name] = "LOADED"
            except PretrainedWeightsError as err:
                out[name] = str(err)
        print(json.dumps(out))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "empty_hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    messages = json.loads(run.stdout.strip().splitlines()[-1])
    expected = {"segformer_b4": SEGFORMER_VARIANTS["b4"]["hf_id"],
                "segformer_b5": SEGFORMER_VARIANTS["b5"]["hf_id"],
                "segformer_unet": SEGFORMER_VARIANTS["b2"]["hf_id"],
                "mask2former_swin": "facebook/mask2former-swin-small-coco-instance"}
    for name, hf_id in expected.items():
        assert hf_id in messages[name] and f"hf download {hf_id}" in messages[name], messages[name]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["segformer_b4", "segformer_unet", "mask2former_swin"])
def test_half_precision_snapshot_loads_in_float32(name, dtype, tmp_path):
    """transformers 5 would keep a snapshot's saved dtype (dtype="auto"); training needs fp32."""
    torch.manual_seed(0)
    if name.startswith("mask2"):
        net, drop = Mask2FormerForUniversalSegmentation(mask2former_config("tiny")), (SWIN_NORM,)
    else:
        net, drop = SegformerForSemanticSegmentation(segformer_config("tiny", num_labels=5)), ()
    folder = save_snapshot(net, tmp_path / "half", drop=drop, dtype=dtype)
    assert json.loads((folder / "config.json").read_text())["dtype"] == str(dtype).removeprefix("torch.")
    model = build_model(name, size="tiny", pretrained=folder)
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.float32}
    # The HF module each depth model wraps, and the prefix its weights have in the snapshot.
    attr, prefix = {"segformer_b4": ("net", ""), "segformer_unet": ("encoder", "segformer."),
                    "mask2former_swin": ("net", "model.")}[name]
    inner = getattr(model, attr)
    saved = {k.removeprefix(prefix): v for k, v in net.state_dict().items() if k.startswith(prefix)}
    loaded = {k: v for k, v in inner.state_dict().items() if k in saved and "classifier" not in k}
    assert len(loaded) > 0.9 * len(inner.state_dict())
    for key, value in loaded.items():
        assert torch.equal(value, saved[key].float()), key  # the half values, widened exactly


@pytest.mark.parametrize("name", ["resnet_unet", "mobilenet_unet"])
def test_half_precision_encoder_file_loads_in_float32(name, tmp_path):
    """smp's safetensors (and torchvision's .pth) are copied into float32 parameters."""
    from safetensors.torch import save_file
    from torchvision import models

    from trainables.weights import FILENAME

    torch.manual_seed(0)
    if name == "resnet_unet":  # the tiny size has smp's resnet18 encoder
        state = {k: v.half() for k, v in models.resnet18().state_dict().items()}
        save_file(state, tmp_path / "model.safetensors")
    else:
        state = {k: v.half() for k, v in models.mobilenet_v2().state_dict().items()}
        torch.save(state, tmp_path / FILENAME)
    model = build_model(name, size="tiny", pretrained=tmp_path)
    encoder = model.net.encoder.state_dict()
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.float32}
    assert all(torch.equal(encoder[k], v.float()) for k, v in state.items() if k in encoder)
    assert sum(k in encoder for k in state) > 0.9 * len(encoder)


def _randomise_last_conv(conv: torch.nn.Conv2d) -> None:
    # The log-depth layer starts near-constant; make its output carry the features it sees.
    torch.nn.init.normal_(conv.weight)


def test_segformer_head_is_one_channel_quarter_res_upsampled_bilinearly():
    torch.manual_seed(0)
    model = build_model("segformer_b4", size="tiny").eval()
    _randomise_last_conv(model.net.decode_head.classifier)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits = model.net(pixel_values=x).logits
        out = model.forward_log(x)
    assert logits.shape == (2, 1, 16, 24) and out.shape == (2, 1, 64, 96)
    assert torch.allclose(out, F.interpolate(logits, size=(64, 96), mode="bilinear"), atol=1e-6)


def _second_difference_where_bilinear_4x_is_linear(out: torch.Tensor) -> tuple[float, float]:
    """Max |second difference| along W at the columns where a 4x bilinear upsampling (no
    align_corners) is exactly linear (centres j = 0, 3 mod 4), and over all columns."""
    d2 = (out[..., :-2] - 2 * out[..., 1:-1] + out[..., 2:]).abs()  # centre j = 1 .. W-2
    centres = torch.arange(1, out.shape[-1] - 1)
    linear = (centres % 4 == 0) | (centres % 4 == 3)
    return d2[..., linear].max().item(), d2.max().item()


def test_segformer_unet_has_full_resolution_detail_that_a_4x_upsampling_lacks():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 96)
    plain = build_model("segformer_b4", size="tiny").eval()
    _randomise_last_conv(plain.net.decode_head.classifier)
    unet = build_model("segformer_unet", size="tiny").eval()
    _randomise_last_conv(unet.head)
    with torch.no_grad():
        flat, plain_all = _second_difference_where_bilinear_4x_is_linear(plain.forward_log(x))
        detail, unet_all = _second_difference_where_bilinear_4x_is_linear(unet.forward_log(x))
    assert plain_all > 1e-3 and flat < 1e-4 * plain_all  # the criterion sees a 4x bilinear jump
    assert detail > 0.1 * unet_all  # segformer_unet is not one
