"""SegFormer (Xie et al., NeurIPS 2021) from Hugging Face ``transformers``, as depth models.

- ``segformer_b4`` / ``segformer_b5``: the paper's models. The ADE20k-finetuned checkpoint's
  Mix-Transformer encoder *and* all-MLP decode head are kept; only the decode head's last 1x1
  classifier is rebuilt with one output channel (log-depth), and its 1/4-resolution logits are
  upsampled bilinearly to the input size.
- ``segformer_unet``: the proposed next step. The same encoder (b4 by default) feeds a U-Net
  decoder with skips from all four stages (1/4 .. 1/32) and from a small full-resolution stem
  on the image (1/1 and 1/2), so fine detail does not come from a 4x bilinear jump.

Inputs are ImageNet-normalised RGB, which is also what SegFormer's image processor feeds it.
Also home of ``load_hf_snapshot``, the pretrained-weight loading shared with ``mask2former``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerModel

from trainables.models.base import (
    ConvBlock,
    DepthModel,
    crop_to,
    depth_head,
    init_log_depth,
    pad_to_multiple,
    upsample_to,
    variant,
)
from trainables.models.registry import PretrainedWeightsError, register_model

# Encoder variants: the released ADE20k checkpoint and the config it was trained with, so that
# pretrained=False builds the same architecture offline. Every variant uses SegformerConfig's
# defaults for heads (1, 2, 5, 8), sr_ratios, patch sizes and strides.
_MIT = dict(hidden_sizes=[64, 128, 320, 512], decoder_hidden_size=768)
SEGFORMER_VARIANTS: dict[str, dict] = {
    "b0": dict(hf_id="nvidia/segformer-b0-finetuned-ade-512-512",
               hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "b1": dict(hf_id="nvidia/segformer-b1-finetuned-ade-512-512",
               hidden_sizes=[64, 128, 320, 512], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "b2": dict(hf_id="nvidia/segformer-b2-finetuned-ade-512-512", depths=[3, 4, 6, 3], **_MIT),
    "b3": dict(hf_id="nvidia/segformer-b3-finetuned-ade-512-512", depths=[3, 4, 18, 3], **_MIT),
    "b4": dict(hf_id="nvidia/segformer-b4-finetuned-ade-512-512", depths=[3, 8, 27, 3], **_MIT),
    "b5": dict(hf_id="nvidia/segformer-b5-finetuned-ade-640-640", depths=[3, 6, 40, 3], **_MIT),
    # Test-sized, random init only: no weights were ever released for it.
    "tiny": dict(hf_id=None, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                 num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=32),
}
# Config fields that decide parameter shapes: a snapshot must agree on them with the variant
# asked for, or a later rebuild from ``arch_config`` (pretrained=False) would not fit its weights.
_SHAPE_KEYS = ("hidden_sizes", "depths", "num_attention_heads", "sr_ratios", "mlp_ratios",
               "patch_sizes", "strides", "num_encoder_blocks")


def segformer_config(name: str, **overrides) -> SegformerConfig:
    """The ``SegformerConfig`` of variant ``name`` (b0..b5 or tiny), with ``overrides``."""
    kw = variant(SEGFORMER_VARIANTS, name)
    kw.pop("hf_id")
    return SegformerConfig(**{**kw, **overrides})


def load_hf_snapshot(cls: type, pretrained: bool | str | Path, *, hf_id: str | None,
                     model_type: str, **kwargs) -> tuple[nn.Module, list[str]]:
    """``cls.from_pretrained`` from ``hf_id`` (``pretrained=True``) or a local snapshot folder.

    The hub download honours ``HF_HOME``, ``HF_HUB_OFFLINE`` and the local cache. Weights load
    in float32 whatever dtype the snapshot was saved in. Any failure
    to get the weights raises ``PretrainedWeightsError`` saying how to provide them; there is
    no fallback to random weights. Returns the model (in train mode) and the names of the
    weights the snapshot did not provide (missing or of another shape), for the caller to judge.
    """
    if pretrained is True:
        if hf_id is None:
            raise PretrainedWeightsError(
                "the tiny variant has no released weights: pass pretrained=<a local Hugging Face "
                "snapshot folder> saved from a model with the tiny config, or pretrained=False")
        source = hf_id
    else:
        folder = Path(pretrained)
        config_file = folder / "config.json"
        try:
            found = json.loads(config_file.read_text()).get("model_type")
        except (OSError, ValueError) as err:
            raise PretrainedWeightsError(
                f"{folder}: not a Hugging Face snapshot nor a depth-grid save "
                f"(cannot read a config.json: {err})") from err
        if found != model_type:
            raise PretrainedWeightsError(
                f"{config_file}: model_type is {found!r}, this architecture needs {model_type!r}")
        source = str(folder)
    try:
        # transformers 5 loads in the snapshot's saved dtype by default (dtype="auto"); training
        # (GradScaler, the CPU path) needs float32 master weights whatever the file holds.
        model, info = cls.from_pretrained(source, output_loading_info=True, dtype=torch.float32,
                                          **kwargs)
    except (OSError, ValueError) as err:
        hint = (f"Get them where there is network with `hf download {hf_id}` (into $HF_HOME, "
                f"then set HF_HUB_OFFLINE=1 to skip the connection retries), or pass "
                f"pretrained=<a local snapshot folder of {hf_id}>" if hf_id else
                "Pass pretrained=<a local Hugging Face snapshot folder>")
        raise PretrainedWeightsError(f"{source}: cannot load pretrained weights ({err}). {hint}") from err
    # BN step counters carry no learned value; older checkpoints do not hold them.
    not_loaded = [k for k in info["missing_keys"] if not k.endswith("num_batches_tracked")]
    not_loaded += [k for k, *_ in info["mismatched_keys"]]
    return model.train(), sorted(not_loaded)  # from_pretrained returns eval mode


def check_architecture(source: str, *checks: tuple) -> None:
    """Raise when a snapshot's config differs from the variant's in a shape-deciding field.

    Each check is ``(loaded_config, expected_config, keys, label_prefix)``.
    """
    diffs = [f"{prefix}{k}={getattr(loaded, k, None)} (expected {getattr(expected, k, None)})"
             for loaded, expected, keys, prefix in checks for k in keys
             if _plain(getattr(loaded, k, None)) != _plain(getattr(expected, k, None))]
    if diffs:
        raise PretrainedWeightsError(
            f"{source}: snapshot does not match the requested variant: {', '.join(diffs)}; "
            "choose the size/encoder that matches it")


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _load_segformer(cls: type, pretrained: bool | str | Path, name: str, keys: tuple[str, ...],
                    **kwargs) -> nn.Module:
    """A SegFormer ``cls`` with the weights of variant ``name``; every weight must be found."""
    hf_id = SEGFORMER_VARIANTS[name]["hf_id"]
    model, not_loaded = load_hf_snapshot(cls, pretrained, hf_id=hf_id, model_type="segformer",
                                         **kwargs)
    source = hf_id if pretrained is True else str(pretrained)
    check_architecture(source, (model.config, segformer_config(name), keys, ""))
    # The rebuilt one-channel classifier is the only weight expected not to come from it.
    missing = [k for k in not_loaded if not k.startswith("decode_head.classifier.")]
    if missing:
        raise PretrainedWeightsError(
            f"{source}: {len(missing)} weights are not in the snapshot (e.g. {sorted(missing)[:3]}); "
            "an encoder-only snapshot (nvidia/mit-b*) fits segformer_unet, not the decode-head models")
    return model


class SegformerDepth(DepthModel):
    """HF SegFormer, all-MLP decode head with one log-depth channel, upsampled 4x bilinearly."""

    def __init__(self, net: SegformerForSemanticSegmentation) -> None:
        super().__init__()
        self.net = net

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:
        # Padding to 32 keeps every stage's grid aligned with the image for the 4x upsampling.
        x, size = pad_to_multiple(x, 32)
        logits = self.net(pixel_values=x).logits  # (B, 1, H/4, W/4)
        return crop_to(upsample_to(logits, x.shape[-2:]), size)  # (B, 1, H, W)


def _variant_name(size: str, encoder: str) -> str:
    """The ``SEGFORMER_VARIANTS`` key for ``size`` ("base" uses ``encoder``, b0..b5)."""
    if size not in ("base", "tiny"):
        raise ValueError(f"unknown size {size!r}; valid: base, tiny")
    if encoder not in SEGFORMER_VARIANTS or encoder == "tiny":
        valid = ", ".join(k for k in SEGFORMER_VARIANTS if k != "tiny")
        raise ValueError(f"unknown SegFormer encoder {encoder!r}; valid: {valid}")
    return "tiny" if size == "tiny" else encoder


def _create_segformer(name: str, *, pretrained: bool | str | Path, size: str) -> SegformerDepth:
    name = _variant_name(size, name)
    one_channel = dict(num_labels=1, id2label={0: "log_depth"}, label2id={"log_depth": 0})
    if pretrained:
        net = _load_segformer(SegformerForSemanticSegmentation, pretrained, name,
                              (*_SHAPE_KEYS, "decoder_hidden_size"),
                              ignore_mismatched_sizes=True, **one_channel)
    else:
        net = SegformerForSemanticSegmentation(segformer_config(name, **one_channel))
    init_log_depth(net.decode_head.classifier)
    return SegformerDepth(net)


@register_model("segformer_b4")
def segformer_b4(*, pretrained: bool | str | Path = False, size: str = "base") -> DepthModel:
    return _create_segformer("b4", pretrained=pretrained, size=size)


@register_model("segformer_b5")
def segformer_b5(*, pretrained: bool | str | Path = False, size: str = "base") -> DepthModel:
    return _create_segformer("b5", pretrained=pretrained, size=size)


class SegformerUNet(DepthModel):
    """SegFormer encoder + U-Net decoder: the 1/32 stage is its input, the 1/16, 1/8 and 1/4
    stages and an image stem at 1/2 and 1/1 are its skips, so it ends at full resolution.

    Written here rather than with smp's ``UnetDecoder``: that one has no skip at 1/1.

    Args:
        encoder: a ``SegformerModel`` (four stages at 1/4, 1/8, 1/16, 1/32).
        decoder_channels: output width of the five decoder blocks, at 1/16, 1/8, 1/4, 1/2, 1/1.
        stem_channels: width of the image stem at 1/1 and at 1/2.
    """

    def __init__(self, encoder: SegformerModel, decoder_channels: tuple[int, ...],
                 stem_channels: tuple[int, int]) -> None:
        super().__init__()
        self.encoder = encoder
        c1, c2, c3, c4 = encoder.config.hidden_sizes
        s1, s2 = stem_channels
        self.stem_full = ConvBlock(3, s1)
        self.stem_half = ConvBlock(s1, s2)
        skips = (c3, c2, c1, s2, s1)
        inputs = (c4, *decoder_channels[:-1])
        self.blocks = nn.ModuleList(ConvBlock(i + s, o) for i, s, o in
                                    zip(inputs, skips, decoder_channels, strict=True))
        self.head = depth_head(decoder_channels[-1])

    def forward_log(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, 32)
        full = self.stem_full(x)                     # (B, s1, H, W)
        half = self.stem_half(F.max_pool2d(full, 2))  # (B, s2, H/2, W/2)
        f1, f2, f3, f4 = self.encoder(pixel_values=x, output_hidden_states=True).hidden_states
        y = f4                                       # (B, c4, H/32, W/32)
        for block, skip in zip(self.blocks, (f3, f2, f1, half, full), strict=True):
            y = block(torch.cat([upsample_to(y, skip.shape[-2:]), skip], dim=1))
        return crop_to(self.head(y), size)           # (B, 1, H, W)


_SEGFORMER_UNET = {
    "base": dict(decoder_channels=(256, 128, 64, 32, 16), stem_channels=(16, 32)),
    "tiny": dict(decoder_channels=(32, 16, 16, 8, 8), stem_channels=(8, 8)),
}


@register_model("segformer_unet")
def segformer_unet(*, pretrained: bool | str | Path = False, size: str = "base",
                   encoder: str = "b4") -> DepthModel:
    """``encoder`` picks the SegFormer variant b0..b5 (ignored for ``size="tiny"``)."""
    decoder = variant(_SEGFORMER_UNET, size)
    name = _variant_name(size, encoder)
    if pretrained:
        # Loads the encoder from a full segmentation snapshot too (its decode head is dropped).
        net = _load_segformer(SegformerModel, pretrained, name, _SHAPE_KEYS)
    else:
        net = SegformerModel(segformer_config(name))
    return SegformerUNet(net, **decoder)
