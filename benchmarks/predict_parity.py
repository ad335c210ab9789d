"""How far apart ``load_model(export).predict(image)`` and ``grid.inference.predict`` (the
``depth-grid predict --checkpoint`` path) can land, each in a fresh process, under varied
process conditions (issue 20 item 6: a CI run saw 1.3e-4 apart, relative 4e-5, in half the pixels).

    python benchmarks/predict_parity.py                        # trains a smoke grid first (~40 s)
    python benchmarks/predict_parity.py --experiment /tmp/x/results/smoke --repeats 3

For every trial of the experiment: export it (``grid.inference.export``), then run each side in
its own ``python`` process under a condition (threads, oneDNN ISA, ATen vector ISA, channels-last
input, float32 matmul precision, oneDNN's default floating-point math mode, flip TTA), and compare
with the reference pair (both sides, default conditions). Prints max |a - b|, max |a - b| / |b|
and the fraction of pixels beyond ``rtol=1e-5``, the test's tolerance.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-5

# One side of a comparison, in its own process: argv[1] is a JSON spec.
WORKER = r"""
import json, sys
spec = json.loads(sys.argv[1])
import numpy as np, torch
if spec.get("threads"):
    torch.set_num_threads(spec["threads"])
if spec.get("matmul"):
    torch.set_float32_matmul_precision(spec["matmul"])
if spec.get("channels_last"):  # every 4-D input to a Conv2d as a channels-last (strided) tensor
    conv = torch.nn.Conv2d._conv_forward
    torch.nn.Conv2d._conv_forward = lambda self, x, w, b: conv(self, x.contiguous(memory_format=torch.channels_last), w, b)
if spec["side"] == "api":
    import grid
    depth = grid.load_model(spec["export"], device="cpu").predict(spec["image"], tta=spec.get("tta"))
else:
    from grid.inference.predict import predict
    [npy] = predict(spec["checkpoint"], spec["image"], spec["out"] + ".d", device="cpu", png=False,
                    progress=False, tta=spec.get("tta"))
    depth = np.load(npy)
np.save(spec["out"], depth)
print(json.dumps({"threads": torch.get_num_threads(), "matmul": torch.get_float32_matmul_precision()}))
"""

# name -> (api side's condition, cli side's condition); a condition is {"env": {...}, in-process keys}.
CONDITIONS: dict[str, tuple[dict, dict]] = {
    "same process conditions": ({}, {}),
    "OMP_NUM_THREADS 1 vs 2": ({"env": {"OMP_NUM_THREADS": "1"}}, {"env": {"OMP_NUM_THREADS": "2"}}),
    "OMP_NUM_THREADS 2 vs 1": ({"env": {"OMP_NUM_THREADS": "2"}}, {"env": {"OMP_NUM_THREADS": "1"}}),
    "set_num_threads 1 vs 8": ({"threads": 1}, {"threads": 8}),
    "set_num_threads 3 vs 4": ({"threads": 3}, {"threads": 4}),
    "oneDNN ISA AVX2 vs default": ({"env": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}, {}),
    "ATen ISA default vs avx2": ({"env": {"ATEN_CPU_CAPABILITY": "default"}}, {"env": {"ATEN_CPU_CAPABILITY": "avx2"}}),
    "channels-last input vs contiguous": ({"channels_last": True}, {}),
    "matmul precision high vs highest": ({"matmul": "high"}, {}),
    "matmul precision medium vs highest": ({"matmul": "medium"}, {}),
    "oneDNN fpmath BF16 vs strict": ({"env": {"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}}, {}),
    "flip TTA vs none": ({"tta": True}, {"tta": False}),
}


def _smoke_experiment(root: Path) -> Path:
    import ray

    from grid.experiment.config import RunConfig
    from grid.experiment.run import run
    from grid.synth import generate

    scenes = generate(root / "scenes", scenes=5, views=3, size=(40, 56), seed=1)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="rx", dir="/tmp"))
    try:
        return run(RunConfig(space="smoke", data=scenes, results=root / "results", gpus_per_trial=0, verbose=0)).path
    finally:
        ray.shutdown()


def _side(spec: dict, condition: dict, tmp: Path, tag: str) -> np.ndarray:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **condition.get("env", {})}
    out = tmp / f"{tag}.npy"
    full = {**spec, **{k: v for k, v in condition.items() if k != "env"}, "out": str(out)}
    proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(full)], env=env, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode:
        raise RuntimeError(f"{tag}: {proc.stderr[-2000:]}")
    return np.load(out)


def _compare(a: np.ndarray, b: np.ndarray) -> str:
    diff = np.abs(a.astype(np.float64) - b)
    return (f"abs {diff.max():.3g}  rel {(diff / np.abs(b)).max():.3g}  "
            f"beyond rtol {(diff > RTOL * np.abs(b)).mean():.0%}  differ {(diff > 0).mean():.0%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, help="an experiment folder (default: train a smoke grid)")
    parser.add_argument("--image", type=Path, help="default: the experiment's sample_000004_rgb.png")
    parser.add_argument("--repeats", type=int, default=2, help="fresh process pairs per condition")
    parser.add_argument("--only", action="append", help="conditions whose name contains this")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    tmp = Path(tempfile.mkdtemp(prefix="parity"))
    exp_path = args.experiment or _smoke_experiment(tmp)

    from grid.experiment.record import Experiment
    from grid.inference.export import export

    exp = Experiment.load(exp_path)
    image = args.image or Path(exp.record["data"]["root"]) / "sample_000004_rgb.png"
    board = exp.saved_leaderboard()
    print(f"experiment {exp.path}; image {image}")
    for row in board[board.checkpoint.notna()].itertuples():
        folder = export(exp, tmp / f"F_{row.trial_id}", trial=row.trial_id, command=["predict_parity"])
        spec = {"export": str(folder), "checkpoint": row.checkpoint, "image": str(image)}
        ref = _side({**spec, "side": "cli"}, {}, tmp, "ref")
        print(f"\n{row.arch} (trial {row.trial_id}, si_rmse {row.si_rmse:.6f}), depth "
              f"{ref.min():.5f}..{ref.max():.5f} m; api vs cli, each in a fresh process:")
        for name, (api_cond, cli_cond) in CONDITIONS.items():
            if args.only and not any(o in name for o in args.only):
                continue
            results = []
            for r in range(args.repeats):
                api = _side({**spec, "side": "api"}, api_cond, tmp, f"api{r}")
                cli = _side({**spec, "side": "cli"}, cli_cond, tmp, f"cli{r}")
                results.append((api, cli))
            worst = max(results, key=lambda ac: float(np.abs(ac[0].astype(np.float64) - ac[1]).max()))
            same = all(np.array_equal(a, b) for (a, _), (b, _) in itertools.pairwise(results))
            print(f"  {name:36s} {_compare(*worst)}" + ("" if same else "  (varies between repeats)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
