"""The depth-pretrained architectures (issue 22): Depth Anything V2 (relative and metric), DPT and
GLPN, loaded the way a run loads them.

A temporary ``HF_HOME`` holds the released repos' configs with random weights in the hub layout
(``hf_snapshots.write_released_hub``) and a fresh interpreter with ``HF_HUB_OFFLINE=1`` builds
each through the trial's own ``build_trial_model`` (``pretrained="yes"``), so the weights can come
from nowhere but that cache. Full-size forward and backward at a small input: every trainable
parameter gets a finite, non-zero gradient, the depth is positive and finite at the input's size,
the weights are the snapshot's, and the ``weights`` column says ``pretrained``. The two Small
repos run in CI; DPT-hybrid, GLPN, Base and Large (61M-343M, 0.25-1.4 GB each) only under
``slow``, and every config's parameter count is checked against the published one in CI (on the
meta device, where the zoo builds each variant from its own table too).

How each checkpoint's output becomes log-depth (``trainables.models.depth_hf``) is checked on
tiny models against transformers' own heads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hf_snapshots import RELEASED_DEPTH_HF, released_params_m, save_snapshot, write_released_hub
from transformers import (
    DepthAnythingForDepthEstimation,
    DPTForDepthEstimation,
    GLPNForDepthEstimation,
)
from transformers import logging as hf_logging

from trainables.models import PretrainedWeightsError, build_model
from trainables.models.catalog import BUILT_IN
from trainables.models.depth_anything import depth_anything_config
from trainables.models.dpt import dpt_config
from trainables.models.glpn import glpn_config
from trainables.models.registry import parameter_groups

hf_logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parents[1]
DEPTH_ARCHS = ("depth_anything_v2", "depth_anything_v2_metric", "dpt", "glpn")
# (arch, variant) -> the repo pretrained=True reads; CI's share (25M each) and the slow rest
# (61M-343M: 2-3 minutes together on two busy cores; the hybrid and GLPN paths run in CI at tiny size).
CI = {("depth_anything_v2", "small"): "depth-anything/Depth-Anything-V2-Small-hf",
      ("depth_anything_v2_metric", "small"): "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"}
# In CI too (slow): every family's smallest released checkpoint goes through the real loading path.
SLOW = {("dpt", "hybrid"): "Intel/dpt-hybrid-midas",
        ("glpn", "nyu"): "vinvino02/glpn-nyu"}
HEAVY = {("glpn", "kitti"): "vinvino02/glpn-kitti",
        ("depth_anything_v2", "base"): "depth-anything/Depth-Anything-V2-Base-hf",
        ("depth_anything_v2", "large"): "depth-anything/Depth-Anything-V2-Large-hf",
        ("depth_anything_v2_metric", "base"): "depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf",
        ("depth_anything_v2_metric", "large"): "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf",
        ("dpt", "large"): "Intel/dpt-large"}


def _kwargs(arch: str, variant: str) -> dict[str, str]:
    return {BUILT_IN[arch].variant_key: variant}


def test_released_configs_have_the_published_sizes_and_the_zoo_builds_them() -> None:
    """Every released repo's config has its published parameter count, the catalog states it,
    and the zoo's variant has the same architecture (its own head adds two scalars at most)."""
    counts = released_params_m(tuple(RELEASED_DEPTH_HF))  # raises when a config is not the released one
    assert set(counts) == set(CI.values()) | set(SLOW.values()) | set(HEAVY.values())
    for (arch, variant), repo in {**CI, **SLOW, **HEAVY}.items():
        info = BUILT_IN[arch]
        assert info.hub_repo(_kwargs(arch, variant)) == repo
        assert info.params_m[variant] == RELEASED_DEPTH_HF[repo].params_m
        with torch.device("meta"):
            model = build_model(arch, **_kwargs(arch, variant))
        ours = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(ours - counts[repo]) < 1e-5, (arch, variant, ours, counts[repo])
    for arch in DEPTH_ARCHS:
        assert BUILT_IN[arch].licence and BUILT_IN[arch].encoder and BUILT_IN[arch].hub_repo({"size": "tiny"}) is None


# Runs in a fresh interpreter: huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when imported.
SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from safetensors.torch import load_file
    from huggingface_hub import snapshot_download
    from trainables.config import TrialConfig
    from trainables.trainable import build_trial_model

    torch.manual_seed(0)
    out = {}
    for arch, kwargs, repo in json.loads(sys.argv[1]):
        cfg = TrialConfig(arch=arch, model_kwargs=kwargs, pretrained="yes")
        model, weights = build_trial_model(cfg)
        file = load_file(snapshot_download(repo, local_files_only=True) + "/model.safetensors")
        # transformers 5 saves some weights under the original checkpoints' names (and renames
        # them on loading), so the weights are compared as a multiset of (shape, sum).
        prints = lambda tensors: sorted((tuple(t.shape), float(t.double().sum())) for t in tensors)
        equal = prints(file.values()) == prints(model.net.state_dict().values())
        model.train()
        x = torch.randn(2, 3, 56, 70)
        log_depth = model.forward_log(x)
        (log_depth - torch.randn_like(log_depth)).square().mean().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        depth = log_depth.exp()
        out[f"{arch}:{json.dumps(kwargs)}"] = {
            "weights": weights, "shape": list(depth.shape), "positive": bool((depth > 0).all()),
            "finite": bool(torch.isfinite(depth).all()), "equal": equal,
            "no_grad": [n for n, g in grads.items() if g is None][:5],
            "bad_grad": [n for n, g in grads.items() if g is not None and not (g.isfinite().all() and g.any())][:5],
            "native_space": model.native_space}
        del model, file
    print(json.dumps(out))
""")


def _run_released(hf_home: Path, cases: dict[tuple[str, str], str]) -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    args = json.dumps([(arch, _kwargs(arch, variant), repo) for (arch, variant), repo in cases.items()])
    proc = subprocess.run([sys.executable, "-c", SCRIPT, args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_released(results: dict[str, dict], cases: dict[tuple[str, str], str]) -> None:
    assert len(results) == len(cases)
    for name, r in results.items():
        assert r["weights"] == "pretrained", name
        assert r["equal"], name  # every weight is the snapshot's, none an init
        assert r["shape"] == [2, 1, 56, 70] and r["positive"] and r["finite"], (name, r)
        assert not r["no_grad"] and not r["bad_grad"], (name, r["no_grad"], r["bad_grad"])
        relative = name.startswith(("depth_anything_v2:", "dpt:"))
        assert r["native_space"] == ("inverse" if relative else "depth"), name


@pytest.fixture(scope="module")
def released_hub() -> Iterator[Path]:
    """An ``HF_HOME`` with CI's depth repos (about 200 MB, random weights), once a module."""
    root = Path(tempfile.mkdtemp(prefix="hfd", dir="/tmp"))
    write_released_hub(root, repos=tuple(CI.values()))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_released_snapshots_load_offline_train_and_say_pretrained(released_hub: Path) -> None:
    _check_released(_run_released(released_hub, CI), CI)


@pytest.mark.slow
@pytest.mark.parametrize("case", [*SLOW, *(pytest.param(c, marks=pytest.mark.heavy) for c in HEAVY)],
                         ids=lambda c: f"{c[0]}-{c[1]}")
def test_big_released_snapshots_load_offline_and_train(case: tuple[str, str], tmp_path: Path) -> None:
    repo = {**SLOW, **HEAVY}[case]
    try:
        write_released_hub(tmp_path / "hf", repos=(repo,))
        _check_released(_run_released(tmp_path / "hf", {case: repo}), {case: repo})
    finally:  # up to 1.4 GB: pytest keeps the temp folders of its last three sessions
        shutil.rmtree(tmp_path / "hf", ignore_errors=True)


def test_pretrained_true_offline_names_each_repo_and_how_to_get_it(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import json, sys
        from trainables.models import PretrainedWeightsError, build_model
        out = {}
        for arch, kwargs in json.loads(sys.argv[1]):
            try:
                build_model(arch, pretrained=True, **kwargs)
                out[arch + str(kwargs)] = "LOADED"
            except PretrainedWeightsError as err:
                out[arch + str(kwargs)] = str(err)
        print(json.dumps(out))
    """)
    cases = {**CI, **SLOW, **HEAVY}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "empty"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    arg = json.dumps([(a, _kwargs(a, v)) for a, v in cases])
    proc = subprocess.run([sys.executable, "-c", script, arg], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    messages = json.loads(proc.stdout.strip().splitlines()[-1])
    for (arch, variant), repo in cases.items():
        message = messages[arch + str(_kwargs(arch, variant))]
        assert f"hf download {repo}" in message, message


def _tiny_snapshot(net: torch.nn.Module, folder: Path) -> Path:
    return save_snapshot(net, folder)


def test_a_snapshot_of_another_kind_or_variant_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    relative = _tiny_snapshot(DepthAnythingForDepthEstimation(depth_anything_config("tiny", metric=False)),
                              tmp_path / "da")
    nyu = _tiny_snapshot(GLPNForDepthEstimation(glpn_config("tiny", "nyu")), tmp_path / "glpn")
    hybrid = _tiny_snapshot(DPTForDepthEstimation(dpt_config("tiny_hybrid")), tmp_path / "hybrid")
    build_model("depth_anything_v2", size="tiny", pretrained=relative)  # the matching variant loads
    with pytest.raises(PretrainedWeightsError, match="depth_estimation_type"):
        build_model("depth_anything_v2_metric", size="tiny", pretrained=relative)  # relative is not metres
    with pytest.raises(PretrainedWeightsError, match="hidden_size"):
        build_model("depth_anything_v2", size="small", pretrained=relative)
    with pytest.raises(PretrainedWeightsError, match="max_depth"):
        build_model("glpn", size="tiny", dataset="kitti", pretrained=nyu)  # NYU's 10 m head is not KITTI's
    with pytest.raises(PretrainedWeightsError, match="is_hybrid"):
        build_model("dpt", size="tiny", pretrained=hybrid)
    with pytest.raises(PretrainedWeightsError, match="model_type"):
        build_model("dpt", size="tiny_hybrid", pretrained=nyu)
    with pytest.raises(ValueError, match="nyu, kitti"):
        build_model("glpn", dataset="make3d")


def _fresh_hf(model: torch.nn.Module, cls: type, config) -> torch.nn.Module:
    """transformers' own model (its head's activation untouched) with ``model``'s weights."""
    net = cls(config).eval()
    net.load_state_dict(model.net.state_dict())
    return net


@pytest.mark.parametrize(("arch", "kwargs", "cls", "config", "size"), [
    ("glpn", {"dataset": "kitti"}, GLPNForDepthEstimation, glpn_config("tiny", "kitti"), (64, 96)),
    ("depth_anything_v2_metric", {}, DepthAnythingForDepthEstimation, depth_anything_config("tiny", metric=True),
     (56, 84)),
])
def test_metric_checkpoints_give_the_log_of_their_own_depth(arch, kwargs, cls, config, size) -> None:
    """log(max_depth) + logsigmoid(z) is the log of transformers' sigmoid(z) * max_depth (at a
    size transformers' own forward takes: a multiple of the patch, or of 32)."""
    torch.manual_seed(0)
    model = build_model(arch, size="tiny", **kwargs).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        theirs = _fresh_hf(model, cls, config)(pixel_values=x).predicted_depth.unsqueeze(1)
        ours = model(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("arch", "size", "cls", "config", "last_conv", "shape"), [
    # transformers' DPT forward takes only a square ViT grid, and its hybrid only 384x384 (its config's)
    ("dpt", "tiny", DPTForDepthEstimation, dpt_config("tiny"), lambda net: net.head.head[4], (64, 64)),
    ("dpt", "tiny_hybrid", DPTForDepthEstimation, dpt_config("tiny_hybrid"), lambda net: net.head.head[4],
     (64, 64)),
    ("depth_anything_v2", "tiny", DepthAnythingForDepthEstimation, depth_anything_config("tiny", metric=False),
     lambda net: net.head.conv3, (56, 84)),
])
def test_relative_checkpoints_give_an_affine_map_of_their_disparity(arch, size, cls, config, last_conv,
                                                                     shape) -> None:
    """1/depth = (disparity + shift) / scale, with ``disparity`` transformers' own output (where the
    head's ReLU and our softplus agree, z >> 0); the first training batch puts its median at 3 m."""
    torch.manual_seed(0)
    model = build_model(arch, size=size)
    torch.nn.init.constant_(last_conv(model.net).bias, 12.0)  # z ~ 12: softplus(z) = relu(z) to 1e-5
    x = torch.randn(2, 3, *shape)
    with torch.no_grad():
        first = model.train().forward_log(x)
        model.eval()
        again = model.forward_log(x)
        disparity = _fresh_hf(model, cls, config)(pixel_values=x).predicted_depth.unsqueeze(1)
    head = model.to_log
    assert bool(head.calibrated)
    torch.testing.assert_close(first, again)  # calibrated once, on the first training batch
    assert first.exp().median().item() == pytest.approx(3.0, rel=1e-3)
    scale, shift = head.log_scale.exp(), torch.nn.functional.softplus(head.raw_shift)
    torch.testing.assert_close(scale * torch.exp(-again) - shift, disparity, rtol=1e-4, atol=1e-3)
    shift_ratio = (shift / disparity.median()).item()
    assert shift_ratio == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("arch", DEPTH_ARCHS)
def test_encoder_group_is_the_pretrained_backbone(arch: str) -> None:
    model = build_model(arch, size="tiny")
    encoder, rest = parameter_groups(model)
    names = dict(model.named_parameters())
    prefix = BUILT_IN[arch].encoder[0]
    assert {id(p) for p in encoder} == {id(p) for n, p in names.items() if n.startswith(prefix)}
    assert any(n.startswith("to_log.") for n in names) == (arch in ("depth_anything_v2", "dpt"))  # scale, shift
    assert rest and all(not n.startswith(prefix) for n, p in names.items() if any(p is q for q in rest))


def _space_repos(tags: list[str]) -> tuple[str, ...]:
    """The Hub repos (and smp encoders) the ``depth_models`` trials of ``tags`` load."""
    from hf_snapshots import smp_repo

    from search_spaces.depth_models import VARIANTS

    repos = []
    for tag in tags:
        arch, kwargs = VARIANTS[tag]
        repo = BUILT_IN[arch].hub_repo(kwargs)
        repos.append("resnet50" if repo == smp_repo("resnet50")[0] else repo)
    return tuple(dict.fromkeys(repos))


@pytest.mark.slow
@pytest.mark.parametrize("archs", [("glpn",), pytest.param((), marks=pytest.mark.heavy)],
                         ids=["glpn", "whole_space"])
def test_depth_models_space_runs_at_its_own_settings(archs: tuple[str, ...], tmp_path: Path) -> None:
    """``--space depth_models`` at its own settings (the paper's recipe, pretrained=yes, 426x560),
    one step, two validation images, offline from the released configs' snapshots. The whole
    space (12 trials, 1.6B parameters, ~6.5 GB of snapshots) takes the better part of an hour on
    two cores; ``glpn`` (its two released checkpoints) checks the same path in a minute or two
    (``resnet_unet``, the space's other family, runs at these settings in test_paper_settings.py)."""
    import pandas as pd
    from test_paper_settings import run_space_offline

    from search_spaces.depth_models import VARIANTS
    from search_spaces.profiles import PAPER

    tags = [t for t, (a, _) in VARIANTS.items() if not archs or a in archs]
    write_released_hub(tmp_path / "hf", repos=_space_repos(tags))
    extra = tuple(x for arch in archs for x in ("--arch", arch))
    returncode, log, results = run_space_offline("depth_models", tmp_path / "hf", tmp_path, extra, timeout_s=5400)
    try:
        assert returncode == 0, log.read_text()[-6000:]
        board = pd.read_csv(results / "depth_models" / "leaderboard.csv")
        assert sorted(board.tag) == sorted(tags)
        assert (board.status == "finished").all(), board[["tag", "status", "error"]].to_string()
        assert (board.weights == "pretrained").all(), board[["tag", "weights"]].to_string()
        assert board.si_rmse.notna().all()
        for trial in sorted((results / "ray" / "depth_models").glob("train_depth_*")):
            params = json.loads((trial / "params.json").read_text())
            assert {k: params[k] for k in PAPER if k != "epochs"} == {k: v for k, v in PAPER.items() if k != "epochs"}
            assert "image_size" not in params  # no CPU profile: the trial default, 426x560
            assert (params["arch"], params["model_kwargs"]) == VARIANTS[params["tag"]]
    finally:  # the snapshots and the trials' checkpoints (model and AdamW state) are large: never kept
        shutil.rmtree(results / "ray", ignore_errors=True)
        shutil.rmtree(tmp_path / "hf", ignore_errors=True)


@pytest.mark.parametrize(("arch", "size", "net"), [
    ("depth_anything_v2", "tiny", lambda: DepthAnythingForDepthEstimation(depth_anything_config("tiny", metric=False))),
    ("dpt", "tiny_hybrid", lambda: DPTForDepthEstimation(dpt_config("tiny_hybrid"))),
])
def test_a_loaded_and_calibrated_model_round_trips(arch: str, size: str, net, tmp_path: Path) -> None:
    """Snapshot -> a calibrating training pass -> save_pretrained -> build_model: the same depths
    (the learned scale and shift and the ``calibrated`` flag travel with the weights)."""
    torch.manual_seed(0)
    folder = save_snapshot(net(), tmp_path / "snapshot")
    model = build_model(arch, size=size, pretrained=folder)
    with torch.no_grad():
        model.train().forward_log(torch.randn(2, 3, 64, 70))
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        expected = model.eval()(x)
    model.save_pretrained(tmp_path / "saved")
    again = build_model(arch, pretrained=tmp_path / "saved")
    assert bool(again.to_log.calibrated)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), expected)
        again.train().forward_log(torch.randn(2, 3, 64, 70) * 5)  # no second calibration
        assert torch.equal(again.eval()(x), expected)


def test_models_cli_lists_the_depth_models_with_sizes_sources_and_licences(capsys) -> None:
    from grid.cli import main

    assert main(["models"]) == 0
    blocks: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():  # one block per architecture: its name, then indented lines
        if line and not line[0].isspace():
            blocks[line.split()[0]] = [line]
        elif line and blocks:
            blocks[list(blocks)[-1]].append(line.strip())
    for arch in DEPTH_ARCHS:
        block = "\n".join(blocks[arch])
        assert "error" not in block and "weights: Hugging Face" in block, block
        assert any(x.startswith("licence: ") for x in blocks[arch][1:]), block
    assert blocks["depth_anything_v2"][0].split()[1] == "24.8M"  # its default, small
    assert "released: size: small 24.8M, base 97.5M, large 335.3M" in blocks["depth_anything_v2"]
    assert "released: size: large 343M, hybrid 122.4M" in blocks["dpt"] and blocks["dpt"][0].split()[1] == "343.0M"
    assert "released: dataset: nyu 61.2M, kitti 61.2M" in blocks["glpn"]
    assert "licence: small: Apache-2.0; base, large: CC-BY-NC-4.0" in blocks["depth_anything_v2_metric"][-1]
