"""Per architecture (full size, random init): parameters, forward+backward seconds and peak memory
for one training step at 426x560, batch 2, on the CPU, measured in one run.

    python benchmarks/bench_models.py                      # every registered architecture
    python benchmarks/bench_models.py --only unet --only mobilenet_unet --repeats 3

Each architecture runs in its own subprocess, so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, what the kernel saw, allocator caches included)
is its own. ``step peak`` is that peak minus the resident memory just before the first step:
activations, gradients and autograd buffers. ``fwd+bwd s`` is wall-clock seconds and ``CPU s``
the process's CPU seconds (all threads) for one step, each the lowest of ``--repeats`` steps
after one warm-up step. On a machine shared with other work the wall-clock figure swings with
the load; the CPU figure is the steadier way to compare architectures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SIZE = (426, 560)  # NYU after the Eigen crop
BATCH = 2


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:  # resident pages now (psutil is not a dependency)
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(name: str, repeats: int) -> dict:
    """One architecture, in this process: build it, then time full training steps."""
    import torch

    from trainables.models import build_model

    torch.manual_seed(0)
    model = build_model(name).train()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(BATCH, 3, *SIZE)
    log_target = torch.rand(BATCH, 1, *SIZE) * 2.0  # log-depth of 1..7 m
    before = _rss_mib()
    times, cpu_times = [], []
    for _ in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        t, c = time.perf_counter(), time.process_time()
        log_depth = model.forward_log(x)  # (B, 1, 426, 560)
        (log_depth - log_target).square().mean().backward()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    assert log_depth.shape == (BATCH, 1, *SIZE), log_depth.shape
    peak = _peak_rss_mib()
    return {"name": name, "params": params, "fb_s": min(times[1:]), "first_s": times[0],
            "cpu_s": min(cpu_times[1:]),
            "peak_rss_mib": peak, "step_peak_mib": peak - before, "threads": torch.get_num_threads()}


def run_one(name: str, repeats: int, timeout: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"name": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="architecture (repeatable)")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps after the warm-up")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per architecture")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.repeats)))
        return 0

    from trainables.models import MODELS

    names = args.only or sorted(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; valid: {', '.join(sorted(MODELS))}")
    print(f"one training step (forward + backward), {BATCH}x3x{SIZE[0]}x{SIZE[1]}, CPU, "
          f"{os.cpu_count()} cores, best of {args.repeats} after a warm-up\n")
    print("| architecture | params | fwd+bwd s | CPU s | peak RSS MiB | step peak MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    results = []
    for name in names:
        r = run_one(name, args.repeats, args.timeout)
        results.append(r)
        if "error" in r:
            print(f"| {name} | error: {r['error']} | | | | |", flush=True)
        else:
            print(f"| {name} | {r['params'] / 1e6:.1f}M | {r['fb_s']:.2f} | {r['cpu_s']:.1f} "
                  f"| {r['peak_rss_mib']:.0f} "
                  f"| {r['step_peak_mib']:.0f} |", flush=True)
    ok = [r for r in results if "error" not in r]
    if len(ok) > 1:
        fastest = min(ok, key=lambda r: r["cpu_s"])
        print(f"\nCPU time per step relative to the cheapest ({fastest['name']}): "
              + ", ".join(f"{r['name']} {r['cpu_s'] / fastest['cpu_s']:.1f}x" for r in ok))
    return 1 if len(ok) < len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
