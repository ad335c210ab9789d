"""The split's embedding pass on a GPU worker, while the autoscaler adds the trials' nodes.

On a cluster whose head has no GPU (``cluster.yaml``: a 2-CPU head), computing the split on the
driver takes MobileNet over every image on two cores (about 16 minutes for the competition's
24k images, benchmarks/README) before the Tuner exists, so no GPU node starts meanwhile. Here,
when the run joins a cluster and its trials take GPUs, and the split is not cached:

1. ``ray.autoscaler.sdk.request_resources`` asks for the trials' bundles at once, so the GPU
   nodes start now rather than once Tune asks;
2. ``compute_split`` runs as a Ray task holding one GPU (on the trials' accelerator type), on
   the first GPU node up, with the same arguments it takes on the driver (the embeddings cache
   sits under the same ``cache_dir`` on that node);
3. the driver stores the returned split in its own cache, where a resume finds it.

The request is cleared once the trials are running (:func:`release`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grid.experiment.plan import ExperimentError


def wanted(address: str | None, gpus_per_trial: float) -> bool:
    """Whether the split goes to a GPU worker: the run joined a cluster and its trials take GPUs."""
    return address not in (None, "local") and gpus_per_trial > 0


def request_trial_nodes(trials: int, gpus_per_trial: float, cpus_per_trial: float,
                        accelerator: str | None) -> None:
    """Ask the autoscaler for ``trials`` trial-sized bundles now (they stay requested until
    :func:`release`)."""
    from ray.autoscaler.sdk import request_resources

    from grid.experiment.gpus import trial_bundle

    bundle = trial_bundle(cpus_per_trial, gpus_per_trial, accelerator)
    request_resources(bundles=[dict(bundle) for _ in range(max(1, trials))])


def release() -> None:
    """Clear :func:`request_trial_nodes`'s request (Tune's own demand keeps what it uses)."""
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[])


def _on_gpu_node(kwargs: dict[str, Any]) -> tuple[Any, str]:
    import ray

    from grid.split.compute import compute_split

    return compute_split(**kwargs), ray.get_runtime_context().get_node_id()


def split_on_gpu_worker(kwargs: dict[str, Any], accelerator: str | None) -> Any:
    """``compute_split(**kwargs)`` as a Ray task holding one GPU; the driver caches the result
    where its own ``compute_split`` would. An error of the task's (a bad image) is raised as
    itself, as on the driver."""
    import ray

    from grid.split.compute import cache_path

    options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1, "max_retries": 1}
    if accelerator:
        options["accelerator_type"] = accelerator
    task = ray.remote(**options)(_on_gpu_node)
    try:
        split, node = ray.get(task.remote(kwargs))
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise ExperimentError(f"the split's task failed on a GPU worker: {str(e).splitlines()[0][:200]}") from None
    print(f"Split: embeddings computed on GPU node {node}")
    cache_dir = kwargs.get("cache_dir")
    if cache_dir is not None:
        path = cache_path(Path(cache_dir), split.fingerprint, split.params)
        path.parent.mkdir(parents=True, exist_ok=True)
        split.to_json(path)
    return split
