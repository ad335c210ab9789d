"""How many GPUs each trial asks for: 1 when the cluster has GPUs now or its autoscaler can add
nodes with GPUs, else 0; an explicit ``--gpus-per-trial N`` no node can ever hold is refused, and
so is a ``--cpus-per-trial`` no node has or can get (:func:`check_cpus`). For a new local Ray
both are checked before it starts, against :func:`local_node`.

The decision (:func:`decide`) is a pure function of plain data. :func:`cluster_gpus` gathers it:
the GPUs of the alive nodes from ``ray.nodes()``, and the GPU node types the autoscaler can add
from a zero-CPU task on the head node (the driver may run elsewhere, e.g. through ``ray://``).
Ray 2.60 has no public interface for those node types, so the task reads internals:

- autoscaler v2 publishes them in the GCS (``ray._private.state.state.get_cluster_config()``,
  what Ray Data's ``ray/data/_internal/cluster_autoscaler/util.py`` reads);
- autoscaler v1, which ``ray up`` runs, publishes nothing: its node types are in the file its
  monitor process was started with (``--autoscaling-config=...``). The task finds the monitor of
  this cluster (its command line names this cluster's GCS address: other clusters may share the
  machine) and reads that file; if it sees no monitor at all, ``~/ray_bootstrap_config.yaml``,
  the file ``ray up`` writes (and Tune's ``ray/tune/execution/cluster_info.py`` checks).

``tests/test_gpus.py`` fails if those internals move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # written by `ray up` on the head node


@dataclass(frozen=True)
class NodeType:
    """A node type the autoscaler can add: GPUs per node, and at most how many nodes (-1: no limit)."""

    name: str
    gpus: float
    max_nodes: int


@dataclass(frozen=True)
class GpuPlan:
    gpus_per_trial: float
    reason: str  # one line: why this many
    gpus_now: float = 0.0  # GPUs of the nodes alive now
    addable: tuple[NodeType, ...] = field(default=())  # node types with GPUs the autoscaler can add
    accelerator: str | None = None  # the accelerator type trials ask for (None: any)
    accelerator_reason: str = ""
    cpus_per_trial: float = 1.0  # --cpus-per-trial, else (with GPUs) the GPU nodes' CPUs per GPU
    cpus_reason: str = ""


ACCELERATOR = "accelerator_type:"  # Ray's resource naming a node's GPU type (cluster.yaml sets it)


def trial_bundle(cpus: float, gpus: float, accelerator: str | None) -> dict[str, float]:
    """One trial's resources as Ray names them: its CPUs and GPUs and, for a GPU trial of a chosen
    type, a sliver of ``accelerator_type:<type>`` (what ``ray.remote(accelerator_type=...)``
    asks), so only nodes of that type hold it and the autoscaler adds only those."""
    bundle = {"CPU": cpus, "GPU": gpus}
    if accelerator and gpus:
        bundle[ACCELERATOR + accelerator] = 0.001
    return bundle


def accelerator_types(resources: list[dict[str, float]]) -> set[str]:
    """The accelerator types (``T4``, ``P100``...) these nodes' or node types' resources name."""
    return {k[len(ACCELERATOR):] for res in resources for k, v in res.items() if k.startswith(ACCELERATOR) and v > 0}


def choose_accelerator(requested: str | None, known: set[str], prices: dict[str, float]) -> tuple[str | None, str]:
    """The accelerator type trials ask for, and why, from ``--accelerator`` (None: the default)
    and the types the cluster has or can add. ``any`` asks for none; a type is matched without
    regard to case and must be one of ``known``; the default is the cheapest of ``known`` by
    ``prices`` (a type without a price comes last), none when no node declares a type. With a
    type asked for, the autoscaler adds only nodes of that type (P100s cost ~3x a T4 per hour)."""
    if requested is not None and requested.lower() == "any":
        return None, "--accelerator any"
    if requested is not None:
        match = next((t for t in sorted(known) if t.lower() == requested.lower()), None)
        if match is None:
            from grid.experiment.plan import ExperimentError  # as in decide()

            have = (f"its nodes and node types offer {', '.join(sorted(known))}" if known
                    else "no node or node type declares an accelerator_type resource")
            raise ExperimentError(f"--accelerator {requested}: no node has or can add accelerator_type:{requested} "
                                  f"({have}); pass one of those or --accelerator any")
        return match, f"--accelerator {match}"
    if not known:
        return None, "no node declares an accelerator type"
    ranked = sorted(known, key=lambda t: (prices.get(t) is None, prices.get(t) or 0.0, t))
    priced = ", ".join(f"{t} ${prices[t]:g}/h" if t in prices else f"{t} unpriced" for t in ranked)
    if len(ranked) == 1:
        return ranked[0], f"the only type the cluster has or can add ({priced})"
    return ranked[0], f"the cheapest type the cluster has or can add ({priced}); --accelerator TYPE or any to change"


def _fmt(x: float) -> str:
    return f"{x:g}"


def _gpus(x: float) -> str:
    return f"{x:g} GPU" if x == 1 else f"{x:g} GPUs"


def _describe(types: tuple[NodeType, ...]) -> str:
    return ", ".join(f"{t.name} ({_fmt(t.gpus)} GPU per node, "
                     f"{'no node limit' if t.max_nodes < 0 else f'up to {t.max_nodes} nodes'})" for t in types)


def groups_from_autoscaling_config(cfg: dict[str, Any]) -> list[tuple[str, dict[str, float], int]]:
    """Worker node types of an autoscaler v1 config (the YAML of ``ray up``) as ``(name,
    resources, max_nodes)``, as Ray reads it: a type's ``max_workers`` defaults to the global
    ``max_workers``, which caps it. ``resources`` holds what the type declares (Ray detects
    the rest, e.g. the CPUs, when the node starts)."""
    cap = cfg.get("max_workers")
    out = []
    for name, nt in (cfg.get("available_node_types") or {}).items():
        if name == cfg.get("head_node_type"):
            continue
        most = nt.get("max_workers", cap if cap is not None else -1)
        if cap is not None and (most < 0 or most > cap):
            most = cap
        out.append((name, {k: float(v) for k, v in (nt.get("resources") or {}).items()}, int(most)))
    return out


def node_types_from_autoscaling_config(cfg: dict[str, Any]) -> tuple[NodeType, ...]:
    """Worker node types with GPUs in an autoscaler v1 config (see ``groups_from_autoscaling_config``)."""
    return node_types_from_groups(groups_from_autoscaling_config(cfg))


def node_types_from_groups(groups: list[tuple[str, dict[str, float], int]]) -> tuple[NodeType, ...]:
    """Node groups with GPUs from autoscaler v2's cluster config: (name, resources, max_count)."""
    return tuple(NodeType(name, float(res.get("GPU", 0)), int(most))
                 for name, res, most in groups if res.get("GPU", 0) > 0 and most != 0)


def disabled_node_types(groups: list[tuple[str, dict[str, float], int]]) -> tuple[NodeType, ...]:
    """Node types with GPUs the autoscaler may not add (``max_workers: 0``, as cluster.yaml ships
    its multi-GPU type): never counted as addable, only named when a request needs them."""
    return tuple(NodeType(name, float(res.get("GPU", 0)), 0)
                 for name, res, most in groups if res.get("GPU", 0) > 0 and most == 0)


def decide(requested: float | None, node_gpus: list[float], addable: tuple[NodeType, ...],
           source: str = "", disabled: tuple[NodeType, ...] = ()) -> GpuPlan:
    """GPUs per trial from the GPUs of the alive nodes and the addable GPU node types.

    ``requested`` is ``--gpus-per-trial`` (None: not given). ``source`` says where ``addable``
    came from (named in the reason). Raises ExperimentError for a request no node can hold,
    naming the ``disabled`` node types (``max_workers: 0``) that would hold it.
    """
    now = float(sum(node_gpus))
    largest_now = max(node_gpus, default=0.0)
    have = f"cluster has {_gpus(now)} now"
    if addable:
        can_add = f"its autoscaler{f' ({source})' if source else ''} can add {_describe(addable)}"
    else:
        can_add = f"no node type with GPUs to add{f' ({source})' if source else ''}"
    if requested is None:
        if now > 0:
            return GpuPlan(1.0, f"{have}", now, addable)
        if addable:
            return GpuPlan(1.0, f"{have}; {can_add}", now, addable)
        return GpuPlan(0.0, f"{have} and {can_add}: trials train on CPU", now, addable)
    if requested == 0:
        return GpuPlan(0.0, "--gpus-per-trial 0: trials train on CPU", now, addable)
    fits_now = requested <= largest_now
    fits_type = [t for t in addable if requested <= t.gpus]
    if not fits_now and not fits_type:
        # Imported here: the head-node task imports this module, and grid.experiment pulls in torch.
        from grid.experiment.plan import ExperimentError

        raise ExperimentError(
            f"--gpus-per-trial {_fmt(requested)}: no node has or can get {_gpus(requested)}, so every "
            f"trial would wait forever. The {have} (at most {_fmt(largest_now)} on one node) and "
            f"{can_add}. Pass --gpus-per-trial 0 to train on CPU, or leave it out "
            f"(1 when the cluster has or can add GPUs, else 0).{_enable_hint(requested, disabled)}")
    where = (f"a node now has {_fmt(largest_now)}" if fits_now
             else f"node type {fits_type[0].name} has {_fmt(fits_type[0].gpus)}")
    return GpuPlan(float(requested), f"--gpus-per-trial {_fmt(requested)} ({where}); {have}", now, addable)


def _enable_hint(requested: float, disabled: tuple[NodeType, ...]) -> str:
    fits = [t for t in disabled if requested <= t.gpus]
    if not fits:
        return ""
    named = ", ".join(f"{t.name} ({_fmt(t.gpus)} GPUs per node)" for t in fits)
    return (f" Node type {named} would hold it but has max_workers 0 (not started by default): raise its "
            "max_workers in the cluster config and `ray up` it again (docs/cluster.md, \"Multi-GPU nodes\").")


def default_cpus(gpus_per_trial: float, gpu_nodes: list[dict[str, float]]) -> tuple[float, str]:
    """CPUs per trial when ``--cpus-per-trial`` is not given: 1 on CPU; with GPUs, the fewest CPUs
    per GPU among the GPU nodes (alive or addable) that declare their CPUs, times the trial's
    GPUs, whole and at least 1 (data loading and validation run on them); 1 when none declares."""
    ratios = [res["CPU"] / res["GPU"] for res in gpu_nodes if res.get("GPU", 0) > 0 and res.get("CPU")]
    if gpus_per_trial == 0:
        return 1.0, "1 on CPU"
    if not ratios:
        return 1.0, "1: no GPU node declares its CPUs"
    cpus = max(1.0, float(int(min(ratios) * gpus_per_trial)))
    return cpus, f"{cpus:g}: the GPU nodes' {min(ratios):g} CPUs per GPU"


def check_cpus(requested: float, node_cpus: list[float], addable: list[float | None], source: str = "") -> None:
    """Refuse ``--cpus-per-trial`` that no node has or can get: Tune would leave every trial
    PENDING forever. ``addable``: the CPUs of each node type the autoscaler can add (None: the
    type does not declare them, so it might have enough)."""
    largest = max(node_cpus, default=0.0)
    if requested <= largest or any(c is None or requested <= c for c in addable):
        return
    from grid.experiment.plan import ExperimentError  # as in decide()

    can_add = (f"its autoscaler{f' ({source})' if source else ''} can add at most {_fmt(max(addable))} per node"
               if addable else "no node type to add")
    raise ExperimentError(
        f"--cpus-per-trial {_fmt(requested)}: no node has or can get {_fmt(requested)} CPUs, so every trial "
        f"would wait forever. The largest node has {_fmt(largest)} and {can_add}; pass --cpus-per-trial "
        f"{_fmt(largest)} or less.")


def local_node() -> tuple[float, float]:
    """(CPUs, GPUs) a new local Ray gives this machine, before it starts: Ray's own resolution
    of a head node's resources (cgroup limits, CUDA_VISIBLE_DEVICES included; internal, as above)."""
    from ray._private.resource_and_label_spec import ResourceAndLabelSpec

    spec = ResourceAndLabelSpec().resolve(is_head=True)
    return float(spec.num_cpus), float(spec.num_gpus)


# ---- what Ray knows (internals: see the module docstring) ---------------------------------------

def _monitor_config(gcs_address: str, proc: Path = Path("/proc")) -> tuple[str, dict | None]:
    """On the head node: (where, config) of this cluster's autoscaler v1 config file.

    ``where`` names the monitor process or file read; config is None when the monitor runs
    without ``--autoscaling-config`` (a cluster started by hand or by ``ray.init``: no autoscaler).
    """
    import yaml

    for d in proc.glob("[0-9]*"):
        try:
            argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        # Ray's services.start_monitor: python -u .../autoscaler/[v2/]monitor.py ... --gcs-address=A
        if not any(a.endswith("monitor.py") for a in argv[:3]) or f"--gcs-address={gcs_address}" not in argv:
            continue
        flag = [a.split("=", 1)[1] for a in argv if a.startswith("--autoscaling-config=")]
        if not flag:
            return f"monitor pid {d.name} runs without --autoscaling-config", None
        path = Path(flag[0]).expanduser()
        if not path.is_absolute():
            path = (d / "cwd").resolve() / path
        return str(path), yaml.safe_load(path.read_text())
    path = Path(BOOTSTRAP_CONFIG).expanduser()
    if path.is_file():
        return str(path), yaml.safe_load(path.read_text())
    return "no autoscaler monitor found on the head node", None


def _read_on_head() -> tuple[str, str, Any]:
    """Runs on the head node (as a worker there, so also under Ray Client): ``("v2", where,
    groups)`` or ``("v1", where, config or None)``."""
    import ray
    import ray._private.state

    cluster_config = ray._private.state.state.get_cluster_config()  # autoscaler v2 (internal)
    if cluster_config is not None and cluster_config.node_group_configs:
        groups = [(g.name, dict(g.resources), g.max_count) for g in cluster_config.node_group_configs]
        return "v2", "autoscaler v2 cluster config", groups
    return ("v1", *_monitor_config(ray.get_runtime_context().gcs_address))


def addable_groups(timeout_s: float = 60.0) -> tuple[list[tuple[str, dict[str, float], int]], str]:
    """Every node type this cluster's autoscaler can add, as ``(name, resources, max_nodes)``,
    and where that was read."""
    groups, where, _ = autoscaler_view(timeout_s)
    return groups, where


def autoscaler_view(timeout_s: float = 60.0) -> tuple[list[tuple[str, dict[str, float], int]], str, str | None]:
    """:func:`addable_groups`, and the autoscaler's provider type where its config names one
    (``gcp``, ``aws``, ``fake_multinode``: Ray's provider that starts its nodes on this machine)."""
    import ray

    task = ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001}, max_retries=0)(_read_on_head)
    ref = task.remote()
    try:
        kind, where, data = ray.get(ref, timeout=timeout_s)
    except (ray.exceptions.GetTimeoutError, ray.exceptions.RayError) as e:
        ray.cancel(ref)
        return [], f"autoscaler config unreadable on the head node ({type(e).__name__})", None
    if kind == "v2":
        return list(data), where, None
    provider = ((data or {}).get("provider") or {}).get("type")
    return (groups_from_autoscaling_config(data) if data else []), where, provider


def addable_node_types(timeout_s: float = 60.0) -> tuple[tuple[NodeType, ...], str]:
    """GPU node types this cluster's autoscaler can add, and where that was read."""
    groups, where = addable_groups(timeout_s)
    return node_types_from_groups(groups), where


def cluster_gpus(requested: float | None, accelerator: str | None = None,
                 prices: dict[str, float] | None = None, cpus: float | None = None) -> GpuPlan:
    """:func:`decide` for the connected Ray cluster (asks the autoscaler only when it matters),
    then for trials with GPUs :func:`choose_accelerator` among the types its nodes have and its
    autoscaler can add, and the CPUs per trial (``cpus``, else :func:`default_cpus`)."""
    from dataclasses import replace

    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    node_gpus = [float(res.get("GPU", 0)) for res in nodes]
    groups, source = None, ""
    if (requested is None and sum(node_gpus) > 0) or requested == 0 or (
            requested is not None and requested <= max(node_gpus, default=0)):
        plan = decide(requested, node_gpus, ())
    else:
        groups, source = addable_groups()
        plan = decide(requested, node_gpus, node_types_from_groups(groups), source, disabled_node_types(groups))
    if plan.gpus_per_trial == 0:
        return replace(plan, cpus_per_trial=cpus or 1.0, cpus_reason="--cpus-per-trial" if cpus else "1 on CPU")
    if groups is None:
        groups, source = addable_groups()
    gpu_nodes = [res for res in nodes if res.get("GPU", 0) > 0] + [res for _, res, most in groups
                                                                   if most != 0 and res.get("GPU", 0) > 0]
    if (accelerator or "").lower() == "any":
        chosen, why = None, "--accelerator any"
    else:
        chosen, why = choose_accelerator(accelerator, accelerator_types(gpu_nodes), prices or {})
    if chosen:
        gpu_nodes = [res for res in gpu_nodes if res.get(ACCELERATOR + chosen, 0) > 0]
    cpus_per_trial, cpus_why = (cpus, "--cpus-per-trial") if cpus else default_cpus(plan.gpus_per_trial, gpu_nodes)
    return replace(plan, accelerator=chosen, accelerator_reason=why, cpus_per_trial=cpus_per_trial,
                   cpus_reason=cpus_why)


def cluster_cpus(requested: float) -> None:
    """:func:`check_cpus` for the connected Ray cluster (asks the autoscaler only when no alive
    node has enough)."""
    import ray

    node_cpus = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]]
    if requested <= max(node_cpus, default=0.0):
        return
    groups, source = addable_groups()
    addable = [res.get("CPU") for _, res, most in groups if most != 0]
    check_cpus(requested, node_cpus, addable, source)
