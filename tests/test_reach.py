"""Local storage on a cluster of several machines is refused before any trial starts
(grid.experiment.reach), on plain data: the rule, and the mount table it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from grid.experiment.plan import ExperimentError
from grid.experiment.reach import check_reach, filesystem_type


def test_a_folder_every_node_reaches_is_accepted() -> None:
    check_reach("gs://bucket/ray", True, ["10.0.0.1", "10.0.0.2"], ["gpu_t4_spot"], "gcp", "ext4")  # a bucket
    check_reach("/home/me/ray", True, ["127.0.0.1", "127.0.0.1"], [], None, "ext4")  # one machine, two nodes
    check_reach("/tmp/r/ray", False, ["127.0.0.1"], ["gpu_t4_spot"], "fake_multinode", "tmpfs")  # fake provider
    check_reach("/mnt/nfs/ray", True, ["10.0.0.1", "10.0.0.2"], ["gpu_t4_spot"], "gcp", "nfs4")  # shared filesystem


def test_a_folder_on_this_machine_is_refused_on_a_cluster_of_several() -> None:
    with pytest.raises(ExperimentError) as e:
        check_reach("/home/me/results/ray", False, ["10.0.0.1"], ["gpu_t4_spot", "gpu_p100_spot"], "gcp", "ext4")
    message = str(e.value)
    assert message.startswith("no --storage: checkpoints would go to /home/me/results/ray is a folder on this machine")
    assert "its autoscaler can add gpu_t4_spot, gpu_p100_spot nodes" in message and "--storage gs://" in message
    assert "\n" not in message
    with pytest.raises(ExperimentError, match=r"^--storage /data/ray is a folder on this machine \(xfs\), but its nodes "
                                              r"run on 2 machines \(10.0.0.1, 10.0.0.2\)"):
        check_reach("/data/ray", True, ["10.0.0.2", "10.0.0.1", "10.0.0.2"], [], None, "xfs")


def test_the_filesystem_is_read_from_the_longest_mount_above_the_folder(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {tmp_path} nfs4 rw 0 0\n"
                      f"tmpfs {tmp_path}/scratch tmpfs rw 0 0\n")
    (tmp_path / "scratch").mkdir()
    assert filesystem_type(tmp_path / "ray" / "not-yet", mounts) == "nfs4"  # nearest existing parent
    assert filesystem_type(tmp_path / "scratch" / "ray", mounts) == "tmpfs"
    assert filesystem_type("/usr", mounts) == "ext4"
    assert filesystem_type("/usr", tmp_path / "no-table") is None
    assert filesystem_type(Path.cwd()) is not None  # this machine's own table
