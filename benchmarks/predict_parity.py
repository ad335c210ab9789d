"""How far apart ``load_model(export).predict(image)`` and ``grid.inference.predict`` (what
``depth-grid predict --checkpoint`` runs) land, each in a fresh process (issue 20 item 6: a CI run
saw them 1.3e-4 apart, relative 4e-5, in half the pixels).

    python benchmarks/predict_parity.py                          # trains a smoke grid first (~40 s)
    python benchmarks/predict_parity.py --experiment results/smoke --repeats 3
    python benchmarks/predict_parity.py --experiment results/smoke --first-calls 100 [--resolve-vml]

Conditions (default): for every trial of the experiment, export it, run each side in its own
process under a condition (threads, oneDNN and ATen instruction sets, channels-last input, float32
matmul precision, oneDNN's floating-point math mode, flip TTA), and print max |a - b|,
max |a - b| / |b|, the share of pixels beyond the test's ``rtol=1e-5`` and the share that differ.

``--first-calls N``: N fresh processes per side under default conditions, each one prediction;
counts the processes whose map differs from the most common one. torch's CPU ``exp`` (the last
step, log-depth to metres) runs on MKL VML, and oneMKL 2024.2 resolves each VML function's kernel
on its first call: when two intra-op threads make that first call at once, one thread's chunk can
run a low-accuracy kernel (pytorch/pytorch#188792). ``--resolve-vml`` has each process make one
single-element call of every VML-backed function first, on one thread, as a fix would.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-5

# torch CPU unary ops that may run on MKL VML (a single-element call resolves each; harmless if not).
VML_OPS = ("exp", "log", "log2", "log10", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tan", "asin",
           "acos", "atan", "sinh", "cosh", "tanh", "erf", "erfc", "erfinv", "sigmoid", "reciprocal")

# One side of a comparison, in its own process: argv[1] is a JSON spec.
WORKER = r"""
import json, sys
spec = json.loads(sys.argv[1])
import numpy as np, torch
if spec.get("resolve_vml"):
    for dtype in (torch.float32, torch.float64):
        one = torch.full((1,), 0.5, dtype=dtype)
        for op in spec["resolve_vml"]:
            getattr(torch, op)(one)
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
    "MKL VML on AVX2 vs default": ({"env": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}}, {}),
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


class Sides:
    """Runs one side in a fresh process; each run writes to its own files."""

    def __init__(self, tmp: Path, resolve_vml: bool) -> None:
        self.tmp, self.n = tmp, 0
        self.resolve = list(VML_OPS) if resolve_vml else []

    def __call__(self, spec: dict, condition: dict) -> np.ndarray:
        self.n += 1
        out = self.tmp / f"run{self.n}.npy"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **condition.get("env", {})}
        full = {**spec, **{k: v for k, v in condition.items() if k != "env"}, "out": str(out),
                "resolve_vml": self.resolve}
        proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(full)], env=env, capture_output=True,
                              text=True, timeout=300)
        if proc.returncode:
            raise RuntimeError(f"{spec['side']}: {proc.stderr[-2000:]}")
        return np.load(out)


def _compare(a: np.ndarray, b: np.ndarray) -> str:
    diff = np.abs(a.astype(np.float64) - b)
    return (f"abs {diff.max():.3g}  rel {(diff / np.abs(b)).max():.3g}  "
            f"beyond rtol {(diff > RTOL * np.abs(b)).mean():.0%}  differ {(diff > 0).mean():.0%}")


def conditions(side: Sides, spec: dict, repeats: int, only: list[str] | None) -> None:
    for name, (api_cond, cli_cond) in CONDITIONS.items():
        if only and not any(o in name for o in only):
            continue
        pairs = [(side({**spec, "side": "api"}, api_cond), side({**spec, "side": "cli"}, cli_cond))
                 for _ in range(repeats)]
        worst = max(pairs, key=lambda ac: float(np.abs(ac[0].astype(np.float64) - ac[1]).max()))
        varies = len({a.tobytes() for a, _ in pairs} | {c.tobytes() for _, c in pairs}) > (
            1 if not api_cond and not cli_cond else 2)
        print(f"  {name:36s} {_compare(*worst)}" + ("  (varies between processes)" if varies else ""), flush=True)


def first_calls(side: Sides, spec: dict, n: int) -> None:
    for which in ("api", "cli"):
        maps = [side({**spec, "side": which}, {}) for _ in range(n)]
        counts = collections.Counter(m.tobytes() for m in maps)
        modal = np.frombuffer(counts.most_common(1)[0][0], maps[0].dtype).reshape(maps[0].shape)
        odd = [m for m in maps if not np.array_equal(m, modal)]
        line = f"  {which}: {len(odd)} of {n} processes differ from the most common map"
        if odd:
            worst = max(odd, key=lambda m: float(np.abs(m.astype(np.float64) - modal).max()))
            rows = np.flatnonzero((worst != modal).any(axis=1))
            line += f"; worst {_compare(worst, modal)}, rows {rows.min()}-{rows.max()} of {modal.shape[0]}"
        print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, help="an experiment folder (default: train a smoke grid)")
    parser.add_argument("--image", type=Path, help="default: the experiment's sample_000004_rgb.png")
    parser.add_argument("--trial", action="append", help="only these trial_ids (default: every trial)")
    parser.add_argument("--repeats", type=int, default=2, help="fresh process pairs per condition")
    parser.add_argument("--only", action="append", help="conditions whose name contains this")
    parser.add_argument("--first-calls", type=int, metavar="N", help="N fresh processes per side, default conditions")
    parser.add_argument("--resolve-vml", action="store_true", help="each process resolves MKL VML's kernels first")
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
    board = board[board.checkpoint.notna() & (board.checkpoint.astype(str) != "")]
    side = Sides(tmp, args.resolve_vml)
    print(f"experiment {exp.path}; image {image}; MKL VML resolved first: {args.resolve_vml}")
    for row in board.itertuples():
        if args.trial and str(row.trial_id) not in args.trial:
            continue
        folder = export(exp, tmp / f"F_{row.trial_id}", trial=row.trial_id, command=["predict_parity"])
        spec = {"export": str(folder), "checkpoint": row.checkpoint, "image": str(image)}
        print(f"\n{row.arch} (trial {row.trial_id}, si_rmse {row.si_rmse:.6f}); api vs cli, each in a fresh process:")
        if args.first_calls:
            first_calls(side, spec, args.first_calls)
        else:
            conditions(side, spec, args.repeats, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
