"""Run profiles: plain data that ``depth-grid run`` lays over a space's values.

``CPU_DEFAULT`` applies when no ``--data`` is given: the built-in synthetic scenes at a size a
2-core CPU trains every real architecture of a space on in minutes. The numbers are a smoke-scale
reproduction, not the paper's settings; real runs use a space's own values.
"""

# The largest training batch per architecture that fits a 16 GiB T4 at 426x560 under AMP +
# channels-last: the "max batch" column of `python benchmarks/bench_gpu.py --budget-gb 14`, which
# also prints this table. On a GPU a trial of the paper's profile trains with it per step and
# accumulates fewer steps, keeping the effective batch at 16 (TrialConfig.on_device: 2 x 8 becomes
# 8 x 2 where 8 fit). PENDING: no GPU has run bench_gpu yet (benchmarks/README.md, "bench_gpu.py"),
# so the table is empty and every architecture keeps 2 per step, as the paper trained.
T4_MAX_BATCH: dict[str, int] = {}

# The paper's training settings: AdamW lr 1e-4, weight decay 1e-3, lambda 0.5, 4 epochs,
# effective batch 16 (2 per step x 8 accumulated) on the encoders' pretrained weights.
PAPER = {
    "lam": 0.5,
    "lr": 1e-4,
    "weight_decay": 1e-3,
    "epochs": 4,
    "batch_size": 2,
    "accum_steps": 8,
    "pretrained": "yes",
    "seed": 0,
    # Not the paper's: a resumable checkpoint every 15 minutes inside an epoch (6-77 minutes per
    # epoch on a T4), so a preempted Spot trial loses at most that (docs/cluster.md, "Preemption").
    "checkpoint_minutes": 15,
    # On a GPU only: the probed per-step batch (above), the effective batch kept at 16.
    **({"gpu_max_batch": dict(T4_MAX_BATCH)} if T4_MAX_BATCH else {}),
}

SYNTHETIC = {"scenes": 16, "views": 6, "size": (120, 160), "seed": 0, "motion": "drift"}

CPU_DEFAULT = {
    "epochs": 2,
    "image_size": [64, 80],
    "batch_size": 4,
    "accum_steps": 1,
    "max_steps_per_epoch": 12,
    "max_val_images": 8,
    "log_images": 2,
    "num_workers": 0,
    "pretrained": "if_available",
}
