"""The model zoo's contract, checked on every registered architecture (tiny variants, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainables.models import MODELS, DepthModel, PretrainedWeightsError, build_model

NAMES = sorted(MODELS)
ODD_SIZES = [(37, 53), (33, 31)]


def _tiny(name: str, **kw) -> DepthModel:
    torch.manual_seed(0)
    return build_model(name, size="tiny", **kw)


def _image(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_output_contract(name: str) -> None:
    model = _tiny(name).eval()
    for h, w in ODD_SIZES:
        x = _image(2, h, w)
        with torch.no_grad():
            depth, log_depth = model(x), model.forward_log(x)
        assert depth.shape == (2, 1, h, w), (name, h, w)
        assert torch.isfinite(depth).all() and (depth > 0).all()
        torch.testing.assert_close(depth, torch.exp(log_depth))


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    """Every parameter is on the loss's path: it gets a finite gradient, non-zero by the second
    step (zero-initialised gates, e.g. deformable attention's offsets, block it on the first)."""
    model = _tiny(name).train()
    x, target = _image(2, 37, 53), _image(2, 37, 53, seed=2)[:, :1]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    reached: set[str] = set()
    for step in range(2):
        optimizer.zero_grad(set_to_none=True)
        (model.forward_log(x) - target).square().mean().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        no_grad = [n for n, g in grads.items() if g is None]
        assert not no_grad, f"{name}: parameters without gradient: {no_grad[:10]}"
        bad = [n for n, g in grads.items() if not g.isfinite().all()]
        assert not bad, f"{name}: non-finite gradients at step {step}: {bad[:10]}"
        reached |= {n for n, g in grads.items() if g.any()}
        optimizer.step()
    zero = sorted(set(grads) - reached)
    assert not zero, f"{name}: parameters whose gradient stays zero: {zero[:10]}"


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_round_trip(name: str, tmp_path: Path) -> None:
    model = _tiny(name)
    with torch.no_grad():  # a train-mode pass moves the norm statistics off their defaults
        model.train()(_image(2, 40, 48, seed=3))
    model.eval()
    x = _image(1, 37, 53)
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path / "saved")
    torch.manual_seed(123)  # a different random init, which the load must overwrite entirely
    loaded = build_model(name, pretrained=tmp_path / "saved").eval()
    assert loaded.arch_config == model.arch_config
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(KeyError) as err:
        build_model("unet_v9")
    assert "unet_v9" in str(err.value)
    assert all(name in str(err.value) for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_size_lists_the_valid_ones(name: str) -> None:
    with pytest.raises(ValueError, match="huge.*tiny"):
        build_model(name, size="huge")


def test_saved_model_of_another_architecture_is_refused(tmp_path: Path) -> None:
    _tiny("unet").save_pretrained(tmp_path)
    with pytest.raises(PretrainedWeightsError, match="'unet'"):
        build_model("mobilenet_unet", pretrained=tmp_path)


def test_trial_checkpoint_file_loads_and_a_misfit_is_refused(tmp_path: Path) -> None:
    model = _tiny("unet").eval()
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")
    loaded = build_model("unet", size="tiny", pretrained=tmp_path / "checkpoint.pt").eval()
    x = _image(1, 20, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        build_model("unet", size="base", pretrained=tmp_path / "checkpoint.pt")


def test_smp_encoder_loads_from_a_local_hub_copy(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = _tiny("resnet_unet")
    save_file(source.net.encoder.state_dict(), tmp_path / "model.safetensors")
    torch.manual_seed(7)
    model = build_model("resnet_unet", size="tiny", pretrained=tmp_path)
    for key, value in source.net.encoder.state_dict().items():
        assert torch.equal(model.net.encoder.state_dict()[key], value), key
    assert not torch.equal(model.net.decoder.state_dict()["blocks.0.conv1.0.weight"],
                           source.net.decoder.state_dict()["blocks.0.conv1.0.weight"])


@pytest.mark.parametrize("name", ["unet", "resnet_unet", "mobilenet_unet"])
def test_a_folder_of_unknown_weights_is_refused(name: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no weights here")
    with pytest.raises(PretrainedWeightsError, match=str(tmp_path)):
        build_model(name, size="tiny", pretrained=tmp_path)


def test_pretrained_true_without_weights_says_how_to_provide_them(tmp_path: Path) -> None:
    """Empty torch hub and Hugging Face caches, offline: every family must refuse clearly.

    A subprocess, because huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when imported."""
    script = (
        "import json\n"
        "from trainables.models import MODELS, PretrainedWeightsError, build_model\n"
        "out = {}\n"
        "for name in sorted(MODELS):\n"
        "    try:\n"
        "        build_model(name, size='tiny', pretrained=True)\n"
        "        out[name] = 'built'\n"
        "    except PretrainedWeightsError as e:\n"
        "        out[name] = 'PretrainedWeightsError: ' + str(e)\n"
        "    except Exception as e:\n"
        "        out[name] = type(e).__name__ + ': ' + str(e)\n"
        "print(json.dumps(out))\n"
    )
    # No network either: MobileNetV2's weights would otherwise be downloaded (trainables.weights).
    no_network = {k: "http://127.0.0.1:9" for k in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PIP_NO_INDEX": "1", **no_network}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(results) == NAMES
    for name, message in results.items():
        assert message.startswith("PretrainedWeightsError: "), (name, message)
        assert any(hint in message for hint in ("HF_HOME", "pretrained=", "depth-grid weights fetch")), (
            name, message)
    assert "depth-grid weights fetch" in results["mobilenet_unet"]
    assert "smp-hub/resnet18.imagenet" in results["resnet_unet"]
    assert not list((tmp_path / "torch").rglob("*.pth")), "something was downloaded"


def test_models_cli_lists_every_architecture(capsys: pytest.CaptureFixture[str]) -> None:
    from grid.cli import main
    from grid.zoo import count_parameters

    assert main(["models", "--tiny"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{name} " in out for name in NAMES), out
    assert "error" not in out
    # Counting on the meta device gives the real model's count.
    assert count_parameters("unet", "tiny") == sum(p.numel() for p in _tiny("unet").parameters())
