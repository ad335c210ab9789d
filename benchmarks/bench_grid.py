"""The grid's overhead, measured in one run.

1. Grid wall time versus the trials' summed training time divided by the concurrency
   (target: ratio < 1.15). Trials are real ``train_depth`` runs of a small model on generated scenes.
2. The trainable's per-step cost (``train_one_epoch``: loader, accumulation, loss read back every
   16 steps, optimiser) versus a bare PyTorch loop on the same model and an in-memory batch
   (target: < 5% overhead), the two timed in turns.
3. One mid-epoch checkpoint (the state with the epoch's position, written as the trial writes it)
   in ms, in steps, and per step at the paper profile's ``checkpoint_minutes=15``.

    python benchmarks/bench_grid.py [--trials 4] [--concurrency 2] [--epochs 8 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _bundle(root: Path, size: tuple[int, int]):
    from grid.synth import generate
    from trainables.data import DatasetSpec, index_dataset
    from trainables.loop import DataBundle

    data = generate(root / "scenes", scenes=8, views=5, size=size, seed=0)
    spec = DatasetSpec(root=data, format="cil")
    items = index_dataset(spec)
    return DataBundle(spec=spec, train=tuple(items[:32]), val=tuple(items[32:]))


def _config(epochs: int, image_size: list[int]) -> dict:
    return {"arch": "mobilenet_unet", "model_kwargs": {"size": "tiny"}, "pretrained": "no", "epochs": epochs,
            "batch_size": 4, "accum_steps": 1, "image_size": image_size,
            "max_val_images": 4, "log_images": 1, "num_workers": 0, "lr": 1e-3}


def grid_overhead(bundle, trials: int, concurrency: int, epochs: int, image_size: list[int]) -> None:
    import ray
    from ray import tune

    from trainables.trainable import train_depth

    tmp = tempfile.mkdtemp(prefix="bg", dir="/tmp")
    ray.init(address="local", num_cpus=concurrency, include_dashboard=False, _temp_dir=tmp,
             log_to_driver=False, configure_logging=False)
    try:
        space = {**_config(epochs, image_size), "seed": tune.grid_search(list(range(trials)))}
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(train_depth, data=bundle), {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(metric="si_rmse", mode="min", max_concurrent_trials=concurrency,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name="bench", storage_path=str(Path(tmp) / "storage"), verbose=0),
        )
        t0 = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    summed = sum(r.metrics["time_total_s"] for r in results)
    train = sum(r.metrics["train_seconds"] for r in results)
    ideal = summed / concurrency
    print(f"grid: {trials} trials of {epochs} epochs (~{summed / trials:.0f} s each), concurrency {concurrency}: "
          f"wall {wall:.1f} s; summed trial time "
          f"{summed:.1f} s (training+validation {train:.1f} s); ratio wall / (summed / concurrency) = "
          f"{wall / ideal:.3f} (target < 1.15)")


def step_overhead(bundle, image_size: list[int], num_workers: int) -> None:
    import torch

    from trainables.config import TrialConfig
    from trainables.loop import make_loaders, train_one_epoch
    from trainables.losses import si_log_loss
    from trainables.models import build_model
    from trainables.state import TrialState

    torch.set_num_threads(1)
    # The step of a real CPU trial (search_spaces/cpu_transfer.py): small MobileNet-U-Net, batch 8.
    cfg = TrialConfig.from_dict({**_config(1, image_size), "num_workers": num_workers, "batch_size": 8,
                                 "model_kwargs": {"size": "small"}})
    train_loader, _ = make_loaders(cfg, bundle)
    model = build_model(cfg.arch, **cfg.model_kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    state = TrialState(model, opt, scaler, train_loader=train_loader)
    batch = next(iter(train_loader))
    image, target = batch["image"], batch["depth"]

    def bare() -> float:
        model.train()
        t0 = time.perf_counter()
        for _ in range(len(train_loader)):
            loss = si_log_loss(model.forward_log(image), target, cfg.lam)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    def ours() -> float:
        t0 = time.perf_counter()
        train_one_epoch(state, train_loader, cfg, torch.device("cpu"))
        return time.perf_counter() - t0

    def ours_steps(steps: int) -> float:  # an epoch cut to ``steps`` steps
        t0 = time.perf_counter()
        train_one_epoch(state, train_loader, dataclasses.replace(cfg, max_steps_per_epoch=steps), torch.device("cpu"))
        return time.perf_counter() - t0

    bare(), ours()  # warm-up
    n = len(train_loader)
    # Interleaved, best of 7 each: on a shared machine a load that comes and goes then weighs on
    # both alike (one block after the other measured -27% and +45% in two runs minutes apart).
    split = bool(num_workers) and n > 2  # also time 2-step epochs, to part the per-epoch cost out (below)
    runs = [(bare(), ours(), ours_steps(2) if split else 0.0) for _ in range(7)]
    t_bare, t_ours, short = (min(r[i] for r in runs) for i in range(3))
    t_bare, t_ours = t_bare / n, t_ours / n
    print(f"step: bare loop {t_bare * 1e3:.1f} ms/step, trainable {t_ours * 1e3:.1f} ms/step "
          f"(batch {cfg.batch_size} at {image_size[0]}x{image_size[1]}, reading images from disk with "
          f"{num_workers} loader workers, {n}-step epochs): "
          f"overhead {100 * (t_ours / t_bare - 1):+.1f}% (target < 5%)")
    if not num_workers:
        mid_epoch_checkpoint_cost(state, t_ours)
    if split:
        # Workers restart every epoch (not persistent: exact resume seeds them from the checkpointed
        # generator): a fixed cost per epoch (fork, first batch, the parent's copy-on-write pages
        # after the fork), told apart from the per-step cost by timing epochs of two lengths.
        per_step = (t_ours * n - short) / (n - 2)
        fixed = t_ours * n - n * per_step
        long_epoch = 80  # cpu_transfer's: 636 images / batch 8
        print(f"      per step {per_step * 1e3:.1f} ms (overhead {100 * (per_step / t_bare - 1):+.1f}%) plus "
              f"{fixed * 1e3:.0f} ms per epoch (workers restarted); over a {long_epoch}-step epoch: "
              f"{100 * ((long_epoch * per_step + fixed) / (long_epoch * t_bare) - 1):+.1f}%")


def mid_epoch_checkpoint_cost(state, t_step: float) -> None:
    """One mid-epoch checkpoint as the trial writes it (``TrialState.state_dict`` with the epoch's
    position, ``torch.save`` to a local file; Tune's copy to the storage comes on top), in
    milliseconds, in steps, and as a share of training time at the paper profile's 15 minutes."""
    import torch

    from trainables.state import EpochProgress

    record = {"trial_config": {}, "image_size": [], "metrics": {"mid_epoch": True}, "weights": "random",
              "provenance": {}}
    state.progress = EpochProgress(step=1)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        for _ in range(5):
            t0 = time.perf_counter()
            torch.save(state.state_dict(record), path)
            times.append(time.perf_counter() - t0)
        size = path.stat().st_size
    state.progress = EpochProgress()
    t = min(times)
    print(f"      mid-epoch checkpoint: {t * 1e3:.0f} ms ({size / 1e6:.1f} MB written) = {t / t_step:.1f} steps; "
          f"every 15 minutes (checkpoint_minutes=15): {100 * t / 900:.4f}% of training time, "
          f"{t / (900 / t_step) * 1e3:.3f} ms per step")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--epochs", type=int, nargs="+", default=[8, 32],
                   help="epochs per trial (5 steps + validation each); one grid per value")
    p.add_argument("--image-size", type=int, nargs=2, default=[96, 128])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _bundle(Path(tmp), (120, 160))
        for workers in (0, 1):
            step_overhead(bundle, [128, 160], workers)
        for epochs in args.epochs:  # the fixed start-up cost weighs less as trials get longer
            grid_overhead(bundle, args.trials, args.concurrency, epochs, args.image_size)


if __name__ == "__main__":
    main()
