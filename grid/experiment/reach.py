"""Whether every node of the cluster can reach the run's storage.

Tune writes each trial's checkpoints from the node the trial runs on. A local folder is the
same folder for every node only when they are all this machine (a local Ray, Ray's fake
multi-node provider) or when it lies on a filesystem every node mounts (NFS and the like).
Elsewhere the first checkpoint fails, an epoch in, then again on each retry; the run refuses
that before any trial starts (:func:`check_reach`, a pure function of what
:func:`cluster_storage_reach` gathers from Ray).
"""

from __future__ import annotations

from pathlib import Path

from grid.experiment.plan import ExperimentError

# Filesystems a cluster's nodes can share: a folder there is the same folder on every node.
SHARED_FS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "ceph", "glusterfs", "beegfs", "9p",
             "fuse.gcsfuse", "fuse.s3fs", "fuse.mountpoint-s3", "fuse.juicefs", "fuse.ceph", "fuse.glusterfs")
LOCAL_PROVIDERS = ("fake_multinode",)  # autoscaler providers whose nodes start on this machine


def filesystem_type(path: str | Path, mounts: Path = Path("/proc/mounts")) -> str | None:
    """The type of the filesystem ``path`` (or its nearest existing parent) lies on, from the
    longest mount point above it; None where the mount table cannot be read."""
    target = Path(path).expanduser()
    while not target.exists() and target != target.parent:
        target = target.parent
    target = target.resolve()
    try:
        table = [line.split()[1:3] for line in mounts.read_text().splitlines() if len(line.split()) >= 3]
    except OSError:
        return None
    best = max((m for m in table if target.is_relative_to(m[0].replace("\\040", " "))),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else None


def check_reach(storage: str, given: bool, node_hosts: list[str], addable: list[str], provider: str | None,
                fs_type: str | None) -> None:
    """Raise ``ExperimentError`` (one line naming ``--storage``) when the trials' checkpoints
    would go to a local folder some node cannot reach: the alive nodes are on more than one
    host, or the autoscaler can add node types (``addable``), and the folder is not on a shared
    filesystem (``fs_type``). The nodes of Ray's fake provider (``provider``) are all this machine."""
    if "://" in storage or fs_type in SHARED_FS or provider in LOCAL_PROVIDERS:
        return
    hosts = sorted(set(node_hosts))
    if len(hosts) <= 1 and not addable:
        return
    others = (f"its nodes run on {len(hosts)} machines ({', '.join(hosts[:4])}{', ...' if len(hosts) > 4 else ''})"
              if len(hosts) > 1 else f"its autoscaler can add {', '.join(addable)} nodes")
    where = f"--storage {storage}" if given else f"no --storage: checkpoints would go to {storage}"
    raise ExperimentError(
        f"{where} is a folder on this machine ({fs_type or 'filesystem unknown'}), but {others}, whose trials "
        "could not write their checkpoints there. Pass --storage gs://BUCKET/PATH or s3://BUCKET/PATH (or a "
        "folder on a filesystem every node mounts, such as NFS)")


def cluster_storage_reach(storage: str, given: bool) -> None:
    """:func:`check_reach` for the connected Ray cluster (asks the autoscaler only for a local folder)."""
    if "://" in storage:
        return
    import ray

    from grid.experiment.gpus import autoscaler_view

    hosts = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
    groups, _, provider = autoscaler_view()
    check_reach(storage, given, hosts, [name for name, _, most in groups if most != 0], provider,
                filesystem_type(storage))
