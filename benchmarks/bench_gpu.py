"""Per architecture at 426x560 on one GPU: training images/s in fp32 and under AMP + channels-last
(the ratio measured in one run), peak memory, the largest batch in a 16 GiB budget, and the data
loader's images/s with 0, 2 and 4 workers against the step rate.

    python benchmarks/bench_gpu.py                          # every architecture, < 5 min on one GPU
    python benchmarks/bench_gpu.py --archs unet mobilenet_unet --budget-gb 14
    python benchmarks/bench_gpu.py --cpu-check              # the whole code path on the CPU, tiny

A step is the trainable's own: ``trainables.loop.train_one_epoch`` with ``accum_steps=1``
(forward, ``si_log_loss``, backward, ``GradScaler`` + AdamW step; under AMP fp16 autocast with
model and inputs in channels-last, as ``train_depth`` sets them up), on one random batch already
on the GPU, so the figure is the model's alone; the loader is measured apart. Images/s:
``--steps`` steps after ``--warmup``, between ``torch.cuda.synchronize()`` calls. Peak:
``torch.cuda.max_memory_allocated`` over warm-up and timed steps (tensors, not the allocator's
cache nor the CUDA context). Largest batch: AMP + channels-last, doubling from 1, then bisecting,
up to ``--max-batch``; a batch fits when two steps (the second with AdamW's state) run without
running out of memory. On a GPU larger than ``--budget-gb`` the process's share is capped with
``torch.cuda.set_per_process_memory_fraction`` to stand in for a 16 GB T4 / P100. The cap binds
torch's allocator alone; a real card also holds the CUDA context (a few hundred MiB) within the
14.7 GiB torch sees on a T4 (15.9 GiB on a P100), so ``--budget-gb 14`` comes closer to a T4.
The loader is the trainable's own (``trainables.loop.make_loaders``: ``DepthDataset(train=True)``,
its ``collate``, ``pin_memory`` on CUDA, workers started every pass, not persistent), over freshly
generated synthetic scenes; its images/s over each architecture's AMP images/s says whether it
keeps up (>= 1).
fp32 is torch's default fp32, as the trainable runs it: on Ampere and later GPUs cuDNN convolutions
use TF32, so the AMP / fp32 ratio there is smaller than on a T4 or P100.
The step is the lean one: the losses are read back to the host once per ``SYNC_STEPS`` (16) steps
and at the epoch's end (``trainables.loop``), and cuDNN's autotuner is on (``cudnn.benchmark``), as
``train_depth`` sets it for fixed-size inputs.
Validation's metrics: ms per image of ``DeviceMetricAccumulator`` (float64 torch on the device,
what ``trainables.loop.evaluate`` runs) against the numpy reference after a copy to the host (what
it ran before), on 480x640 frames under the plain rule and ``nyu`` + median alignment, with their
largest relative difference (must be <= 1e-6).
The largest batches are also printed as ``search_spaces/profiles.py``'s ``T4_MAX_BATCH`` table, and
the per-step batch x accumulation each architecture then trains with on a GPU (effective batch 16).
Without CUDA it prints ``skipped: no CUDA device`` and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

SIZE = (426, 560)  # NYU after the Eigen crop
CHECK_SIZE, CHECK_ARCHS = (64, 80), ("mobilenet_unet", "unet")  # --cpu-check
WORKERS = (0, 2, 4)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _free(device: torch.device, model: torch.nn.Module | None = None) -> None:
    """Drop gradients left by a failed step and hand cached blocks back before the next run."""
    if model is not None:
        model.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _is_oom(e: BaseException) -> bool:
    # cuBLAS / cuDNN workspaces that cannot be had raise a plain RuntimeError
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e)


def cap_memory(budget_gib: float) -> str:
    """Cap this process's share of a GPU larger than the budget; say what was done."""
    total = torch.cuda.get_device_properties(0).total_memory
    if total <= budget_gib * 2**30:
        return f"no memory cap: the GPU's {total / 2**30:.1f} GiB are within the {budget_gib:g} GiB budget"
    fraction = budget_gib * 2**30 / total
    torch.cuda.set_per_process_memory_fraction(fraction, 0)
    return (f"memory capped at {budget_gib:g} GiB of {total / 2**30:.1f} GiB (set_per_process_memory_fraction "
            f"{fraction:.3f}) to stand in for a 16 GB T4 / P100")


def train_seconds(model: torch.nn.Module, batch: int, size: tuple[int, int], amp: bool, device: torch.device,
                  steps: int, warmup: int) -> tuple[float, int]:
    """Seconds for ``steps`` of the trainable's training step after ``warmup`` ones, with a fresh
    optimiser and scaler as a new trial has (``train_depth``'s set-up), and how many timed steps
    the scaler skipped for inf/NaN gradients (each halves its scale; they skip AdamW's update)."""
    from trainables.config import TrialConfig
    from trainables.loop import train_one_epoch
    from trainables.state import TrialState

    cfg = TrialConfig(arch="bench", batch_size=batch, accum_steps=1, image_size=size, amp=amp, channels_last=amp,
                      pretrained="no")
    cuda = device.type == "cuda"
    model.to(memory_format=torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp)
    gen = torch.Generator().manual_seed(0)
    sample = {"image": torch.randn(batch, 3, *size, generator=gen).to(device),  # (B, 3, H, W)
              "depth": (1.0 + 6.0 * torch.rand(batch, 1, *size, generator=gen)).to(device)}  # metres
    if warmup:
        train_one_epoch(TrialState(model, optimizer, scaler), [sample] * warmup, cfg, device)
    _sync(device)
    t, scale = time.perf_counter(), scaler.get_scale()
    train_one_epoch(TrialState(model, optimizer, scaler), [sample] * steps, cfg, device)
    _sync(device)
    return time.perf_counter() - t, round(math.log2(scale / scaler.get_scale())) if scaler.is_enabled() else 0


def largest_batch(fits: Callable[[int], bool], cap: int) -> int:
    """Largest ``b <= cap`` with ``fits(b)`` (0 if none), fitting being monotone in ``b``:
    double from 1 up to the first failure, then bisect between the last fit and it."""
    lo, hi, b = 0, cap + 1, 1  # lo fits (0: nothing yet), hi does not (cap + 1: unknown)
    while True:
        if not fits(b):
            hi = b
            break
        lo = b
        if b == cap:
            break
        b = min(2 * b, cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def measure(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    """One architecture: fp32 and AMP images/s and peaks at ``--batch``, then the largest batch."""
    from trainables.models import build_model

    torch.manual_seed(0)
    model = build_model(name, pretrained=False).to(device)
    row: dict = {"name": name, "params": sum(p.numel() for p in model.parameters())}
    for key, amp in (("fp32", False), ("amp", True)):
        _free(device, model)
        try:
            seconds, skipped = train_seconds(model, args.batch, args.size, amp, device, args.steps, args.warmup)
        except (RuntimeError, FloatingPointError) as e:  # OOM, or a non-finite loss under fp16
            if not (_is_oom(e) or isinstance(e, FloatingPointError)):
                raise
            row[key] = "OOM" if _is_oom(e) else "non-finite loss"
        else:
            row[key] = args.batch * args.steps / seconds
            row[f"{key}_skipped"] = skipped
            row[f"{key}_peak"] = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None

    def fits(batch: int) -> bool:
        _free(device, model)
        ok = True
        try:
            train_seconds(model, batch, args.size, True, device, steps=2, warmup=0)
        except RuntimeError as e:
            if not _is_oom(e):
                raise
            ok = False
        _free(device, model)  # after the except block, which held the failed step's frames
        return ok

    try:
        row["max_batch"] = largest_batch(fits, args.max_batch)
    except FloatingPointError:  # fp16 overflow at some batch: the images/s above still hold
        row["max_batch"] = "non-finite loss"
    return row


def metric_rates(device: torch.device, images: int, repeats: int) -> list[tuple[str, float, float, float]]:
    """Per scoring: (name, torch ms per image, numpy ms per image, largest relative difference),
    each the best of ``repeats`` passes over ``images`` model-like 480x640 predictions (validation
    frames at NYU's size: the ``nyu`` protocol's crop is defined there) with invalid target pixels."""
    from trainables.metrics import MetricAccumulator
    from trainables.metrics_torch import DeviceMetricAccumulator
    from trainables.protocols import NYU_FRAME, Scoring

    gen = torch.Generator().manual_seed(0)
    targets = [0.5 + 9.0 * torch.rand(1, 1, *NYU_FRAME, generator=gen) for _ in range(images)]  # CPU, as loaded
    for t in targets:
        t[..., :40, :] = 0.0  # no ground truth there
    preds = [(t.clamp(min=0.5) * (0.8 + 0.4 * torch.rand(t.shape, generator=gen))).to(device) for t in targets]
    out = []
    for name, scoring in (("plain", Scoring()), ("nyu + median", Scoring("nyu", "median"))):
        def run(acc, host: bool) -> tuple[float, dict]:
            _sync(device)
            t0 = time.perf_counter()
            for p, t in zip(preds, targets, strict=True):
                acc.update(p.cpu() if host else p, t)
            result = acc.result()  # torch: the one read back
            return time.perf_counter() - t0, result

        torch_s, got = min((run(DeviceMetricAccumulator(scoring), False) for _ in range(repeats)), key=lambda r: r[0])
        numpy_s, ref = min((run(MetricAccumulator(scoring), True) for _ in range(repeats)), key=lambda r: r[0])
        diff = max(abs(got[k] - ref[k]) / max(abs(ref[k]), 1e-12) for k in ref)
        out.append((name, 1e3 * torch_s / images, 1e3 * numpy_s / images, diff))
    return out


def max_batch_table(rows: list[dict]) -> dict[str, int]:
    """The probed largest batches, as ``search_spaces.profiles.T4_MAX_BATCH`` records them."""
    return {r["name"]: r["max_batch"] for r in rows if isinstance(r.get("max_batch"), int) and r["max_batch"] > 0}


def loader_rates(size: tuple[int, int], batch: int, scenes: int, passes: int) -> dict[int, tuple[float, float]]:
    """Per worker count, the trainable's training loader alone over generated scenes: images/s
    after each pass's first batch, and the seconds to that first batch (workers start each pass,
    as in the trainable; an epoch of N batches pays it once)."""
    from grid.synth import generate
    from trainables.config import TrialConfig
    from trainables.data import DatasetSpec, index_dataset
    from trainables.loop import DataBundle, make_loaders

    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        root = generate(Path(tmp) / "synth", scenes=scenes, views=8, size=size, seed=0,
                        workers=min(scenes, os.cpu_count() or 1))
        spec = DatasetSpec(root, format="cil")
        bundle = DataBundle(spec, train=tuple(index_dataset(spec)), val=())
        for workers in WORKERS:  # make_loaders: pin_memory on CUDA, workers seeded from the trial seed
            cfg = TrialConfig(arch="unet", batch_size=batch, image_size=size, num_workers=workers)
            loader, _ = make_loaders(cfg, bundle)
            n, steady, start = 0, 0.0, 0.0
            for _ in range(passes):
                t = time.perf_counter()
                it = iter(loader)
                next(it)
                t1 = time.perf_counter()
                n += sum(sample["image"].shape[0] for sample in it)
                start, steady = start + t1 - t, steady + time.perf_counter() - t1
            rates[workers] = (n / steady, start / passes)
    return rates


def _fmt(value, spec: str) -> str:
    if isinstance(value, str):
        return value  # an error
    return "-" if value is None else format(value, spec)


def report_batches(rows: list[dict], budget: str) -> None:
    from trainables.config import TrialConfig

    table = max_batch_table(rows)
    print(f"\nlargest batch per architecture ({budget}) for search_spaces/profiles.py:\nT4_MAX_BATCH = {table!r}")
    for name, largest in table.items():
        cfg = TrialConfig(arch=name, batch_size=2, accum_steps=8, gpu_max_batch=table).on_device("cuda")
        print(f"  {name}: largest {largest} -> trains {cfg.batch_size} x {cfg.accum_steps} on a GPU (effective 16)")


def report_metrics(metrics: list[tuple[str, float, float, float]], device: torch.device) -> None:
    print(f"\nvalidation metrics per 480x640 image on {device.type}: torch on the device (evaluate) vs numpy "
          "after a copy to the host (the reference)")
    for name, t_ms, n_ms, diff in metrics:
        print(f"  {name:<13} torch {t_ms:6.2f} ms, numpy {n_ms:6.2f} ms ({n_ms / t_ms:.1f}x); "
              f"largest relative difference {diff:.1e} (target <= 1e-6)")


def report(rows: list[dict], loader: dict[int, tuple[float, float]], args: argparse.Namespace, budget: str) -> None:
    h, w = args.size
    print(f"\n| architecture | params | fp32 img/s | AMP+CL img/s | AMP / fp32 | fp32 peak MiB | AMP peak MiB "
          f"| max batch (AMP, {budget}) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | error: {r['error']} | | | | | | |")
            continue
        both = all(isinstance(r[k], float) for k in ("fp32", "amp"))
        ratio = f"{r['amp'] / r['fp32']:.2f}x" if both else "-"
        top = f"{r['max_batch']}+" if r["max_batch"] == args.max_batch else str(r["max_batch"])
        amp = _fmt(r["amp"], ".1f") + (f" ({r['amp_skipped']} skipped)" if r.get("amp_skipped") else "")
        print(f"| {r['name']} | {r['params'] / 1e6:.1f}M | {_fmt(r['fp32'], '.1f')} | {amp} "
              f"| {ratio} | {_fmt(r.get('fp32_peak'), '.0f')} | {_fmt(r.get('amp_peak'), '.0f')} | {top} |")

    rates = {k: v[0] for k, v in loader.items()}
    print(f"\nloader alone (the trainable's make_loaders, pin_memory={torch.cuda.is_available()}; {args.scenes * 8} generated "
          f"images at {h}x{w}, batch {args.batch}, {args.passes} passes; images/s after each pass's first batch, "
          "and the time to that first batch):\n"
          + "\n".join(f"  {k} workers: {r:7.1f} img/s, first batch {s:.2f} s" for k, (r, s) in loader.items()))
    timed = [r for r in rows if isinstance(r.get("amp"), float)]
    if not timed:
        return
    print("\nloader images/s over AMP+CL training images/s (>= 1: the loader keeps up; "
          "the trainable's default is 2 workers)\n")
    print("| architecture | AMP+CL img/s | " + " | ".join(f"{k} workers" for k in rates) + " |")
    print("|---|---:|" + "---:|" * len(rates))
    for r in sorted(timed, key=lambda r: -r["amp"]):
        print(f"| {r['name']} | {r['amp']:.1f} | " + " | ".join(f"{v / r['amp']:.2f}" for v in rates.values()) + " |")
    fastest = max(timed, key=lambda r: r["amp"])
    enough = [k for k, v in rates.items() if v >= fastest["amp"]]
    print(f"\nfastest architecture {fastest['name']} ({fastest['amp']:.1f} img/s): "
          + (f"kept up with from {enough[0]} workers" if enough else f"not kept up with by {max(rates)} workers"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", metavar="NAME", help="architectures (default: every registered one)")
    ap.add_argument("--batch", type=int, default=2, help="batch of the images/s runs (the trainable's default: 2)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--max-batch", type=int, default=64, help="where the batch search stops")
    ap.add_argument("--budget-gb", type=float, default=16.0, help="GiB the process may use on a bigger GPU")
    ap.add_argument("--scenes", type=int, default=12, help="generated scenes of 8 views for the loader")
    ap.add_argument("--passes", type=int, default=2, help="passes over them per worker count")
    ap.add_argument("--cpu-check", "--dry-run", action="store_true",
                    help=f"run every code path on the CPU at {CHECK_SIZE[0]}x{CHECK_SIZE[1]}, "
                         f"{' and '.join(CHECK_ARCHS)}, 1 step, no AMP (checks the script, measures nothing)")
    args = ap.parse_args(argv)
    if not args.cpu_check and not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    from trainables.models import MODELS  # imports the whole zoo: not for a skip

    unknown = sorted(set(args.archs or ()) - set(MODELS))
    if unknown:
        ap.error(f"unknown architecture(s) {unknown}; valid: {', '.join(sorted(MODELS))}")
    t0 = time.perf_counter()
    if args.cpu_check:
        device, args.size = torch.device("cpu"), CHECK_SIZE
        torch.set_num_threads(1)  # a check, not a measurement: light on a shared machine
        args.archs, args.steps, args.warmup = args.archs or list(CHECK_ARCHS), 1, 0
        args.max_batch, args.scenes, args.passes = 4, 1, 1
        assert [largest_batch(lambda b, n=n: b <= n, 64) for n in (0, 1, 37, 64, 99)] == [0, 1, 37, 64, 64]
        budget = "CPU, no cap"
        print(f"CPU check (1 thread, torch {torch.__version__}): autocast and channels-last are "
              "CUDA-only in the trainable, so both columns run fp32; no peaks; figures mean nothing")
    else:
        device, args.size = torch.device("cuda"), SIZE
        budget = f"{args.budget_gb:g} GiB"
        props = torch.cuda.get_device_properties(0)
        print(f"GPU {props.name} ({props.total_memory / 2**30:.1f} GiB), torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; {cap_memory(args.budget_gb)}")
    names = args.archs or sorted(MODELS)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as train_depth sets it: fixed-size inputs
    from trainables.loop import SYNC_STEPS

    print(f"training step (train_one_epoch: forward, si_log_loss, backward, AdamW; losses read back every "
          f"{SYNC_STEPS} steps and at the end), batch {args.batch} at "
          f"{args.size[0]}x{args.size[1]}, {args.steps} timed steps after {args.warmup} warm-up; "
          f"batch search up to {args.max_batch}", flush=True)
    rows = []
    for name in names:
        t = time.perf_counter()
        try:
            rows.append(measure(name, args, device))
        except Exception as e:  # one architecture's failure must not hide the others' figures
            rows.append({"name": name, "error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"})
        _free(device)  # the model is gone with measure's frame (and the exception's)
        print(f"  {name}: {time.perf_counter() - t:.0f} s", flush=True)
    loader = loader_rates(args.size, args.batch, args.scenes, args.passes)
    metrics = metric_rates(device, images=2 if args.cpu_check else 16, repeats=1 if args.cpu_check else 3)
    report(rows, loader, args, budget)
    report_batches(rows, budget)
    report_metrics(metrics, device)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s" + ("" if args.cpu_check else " (target < 300 s on one GPU)"))
    bad_metrics = any(diff > 1e-6 for *_, diff in metrics)
    return 1 if bad_metrics or any("error" in r or isinstance(r["max_batch"], str) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
