"""The experiment's record in its storage: ``<storage>/<name>/`` beside Tune's own files.

A run whose ``--storage`` is a bucket (``gs://``, ``s3://``) keeps there what it writes under
``results/<name>/`` (``experiment.json``, ``split.json``, the leaderboard, the ensemble's record),
so that ``ray down`` loses nothing: ``predict``, ``submit``, ``evaluate``, ``export``, ``figures``
and ``leaderboard`` take ``--experiment gs://BUCKET/PATH/NAME`` and read it from there, and the
same run command on a fresh head resumes from it without recomputing the split.

Reading a record from storage copies its files (kilobytes to megabytes) into a local folder
under the node-local cache and loads that; checkpoints named by URI are fetched the same way,
once (``fetch_file``). Written through the pyarrow filesystems Tune writes with.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.fs as pafs

from trainables.io import atomic_write
from trainables.pack_cache import filesystem

RECORD_FILES = ("experiment.json", "split.json", "leaderboard.csv", "leaderboard.md", "leaderboard_groups.csv",
                "ensemble.json")


class RemoteError(OSError):
    """A storage URI that cannot be read or written; the message names it."""


def cache_root() -> Path:
    """Where records and checkpoints read from storage are kept on this node:
    ``$DEPTH_GRID_CACHE_DIR`` (the node-local cache), else ``~/.cache/depth-grid``."""
    return Path(os.getenv("DEPTH_GRID_CACHE_DIR") or "~/.cache/depth-grid").expanduser()


def record_uri(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}"


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """The storage's filesystem, as packs open theirs (an unknown scheme, missing credentials or
    region, a bad endpoint: a ``RemoteError`` naming the URI)."""
    return filesystem(uri, error=RemoteError)


def upload_record(folder: Path, target: str) -> str:
    """Copy the record files ``folder`` holds to the URI ``target`` (``record_uri``), and return
    it. ``experiment.json``'s split is named relatively there, so the copy reads the same wherever
    it is fetched to."""
    fs, root = _fs(target)
    try:
        fs.create_dir(root, recursive=True)
        for name in RECORD_FILES:
            path = folder / name
            if not path.is_file():
                continue
            data = path.read_bytes()
            if name == "experiment.json":
                record = json.loads(data)
                record["split"] = "split.json"
                data = json.dumps(record, indent=2).encode()
            with fs.open_output_stream(f"{root}/{name}") as fh:
                fh.write(data)
    except OSError as e:
        raise RemoteError(f"{target}: cannot write the experiment's record ({str(e).splitlines()[0][:160]})") from None
    return target


def fetch_record(uri: str, *, missing_ok: bool = False) -> Path | None:
    """The record at ``uri`` copied into ``<cache>/experiments/<hash>/<name>/``; when it holds no
    ``experiment.json``, None with ``missing_ok``, else ``RemoteError`` naming the URI (as for a
    storage that cannot be read)."""
    uri = uri.rstrip("/")
    fs, root = _fs(uri)
    name = root.rstrip("/").rsplit("/", 1)[-1]
    local = cache_root() / "experiments" / hashlib.sha1(uri.encode()).hexdigest()[:16] / name
    try:
        if fs.get_file_info(f"{root}/experiment.json").type != pafs.FileType.File:
            if missing_ok:
                return None
            raise RemoteError(f"{uri}: no experiment.json there (an experiment's record is written to "
                              "<storage>/<name>/ by a run with that --storage)")
        local.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if fs.get_file_info(f"{root}/{name}").type == pafs.FileType.File:
                with fs.open_input_stream(f"{root}/{name}") as src, atomic_write(local / name, "wb") as out:
                    out.write(src.read())
            else:
                (local / name).unlink(missing_ok=True)  # gone from storage: not kept from an older copy
    except RemoteError:
        raise
    except OSError as e:
        raise RemoteError(f"{uri}: cannot read the experiment's record ({str(e).splitlines()[0][:160]})") from None
    return local


def fetch_file(uri: str) -> Path:
    """A file in storage (a checkpoint), copied once into ``<cache>/files/<hash>/`` under its name:
    a later call reads the copy when its size still matches."""
    fs, path = _fs(uri)
    local = cache_root() / "files" / hashlib.sha1(uri.encode()).hexdigest()[:16] / path.rsplit("/", 1)[-1]
    try:
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            raise RemoteError(f"{uri}: no such file in the storage")
        if not (local.is_file() and local.stat().st_size == info.size):
            local.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(path) as src, atomic_write(local, "wb") as out:
                while chunk := src.read(1 << 24):
                    out.write(chunk)
    except RemoteError:
        raise
    except OSError as e:
        raise RemoteError(f"{uri}: cannot read it ({str(e).splitlines()[0][:160]})") from None
    return local
