"""A pack's shards in the node-local cache: fetched once per node, resumable, checked.

``trainables.packed.Pack.local_shard`` decides when a shard is fetched (under a file lock, at
most twice); this module does the fetching and the bookkeeping: a download goes to
``.<name>.part`` (resumed from its size after a cut), is renamed into place when complete, and
a ``.<name>.ok`` marker records that the file as it is now (size, mtime) has the manifest's
SHA-256, so other processes skip the hash. Before the first download of a process the cache
disk must hold every shard still missing (``check_room``): a full disk is one line naming the
cache root, the bytes needed and free, and the options that move it, before anything is fetched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.data import DataError
from trainables.io import atomic_write, is_uri

CACHE_ENV = "DEPTH_GRID_CACHE_DIR"  # a node's own cache root, over the driver's --cache-dir
CHUNK = 64 << 20  # bytes per ranged read of a download (one GET for a shard up to this size)
# a write the cache's disk refused: full, over its quota, or over the file size limit (ulimit -f)
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class Shard:
    name: str
    bytes: int
    sha256: str
    items: int


def filesystem(uri: str, error: type[Exception] = DataError) -> tuple[Any, str]:
    """pyarrow's filesystem for ``uri`` (S3 honours ``AWS_ENDPOINT_URL``) and the path in it; a
    local path is resolved. ``error``: what a URI pyarrow cannot open raises, naming it."""
    import pyarrow.fs as pafs

    if not is_uri(uri):
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as e:  # pyarrow: ArrowInvalid (a scheme it lacks), OSError (credentials, region)
        raise error(f"{uri}: cannot open ({first_line(e)}); check the URI and the credentials "
                    "(AWS_ACCESS_KEY_ID / AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS)") from None


def first_line(error: BaseException) -> str:
    return next((ln.strip() for ln in str(error).splitlines() if ln.strip()), type(error).__name__)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def full_disk(folder: Path, needed: int, free: int, what: str) -> DataError:
    """The one line of a cache disk too small: where, how much (``what`` says for what, with its
    verb), and what moves it."""
    return DataError(f"{folder}: cache disk full: {what} {_size(needed)} ({needed} bytes), {_size(free)} "
                     f"({free} bytes) free there; free space, or point --cache-dir (on a node: "
                     f"${CACHE_ENV}) at a larger disk")


def _part(folder: Path, shard: Shard) -> Path:
    return folder / f".{shard.name}.part"


def missing_bytes(folder: Path, shards: tuple[Shard, ...]) -> int:
    """What fetching every shard not yet in ``folder`` still writes (a partial download counts
    for what it holds)."""
    total = 0
    for shard in shards:
        path = folder / shard.name
        if marked(path, shard, marker(folder, shard)) or (path.is_file() and path.stat().st_size == shard.bytes):
            continue  # there (one not marked yet is hashed, not fetched)
        part = _part(folder, shard)
        have = part.stat().st_size if part.is_file() else 0
        total += shard.bytes - (have if have <= shard.bytes else 0)
    return total


def check_room(folder: Path, shards: tuple[Shard, ...]) -> None:
    """A ``DataError`` unless ``folder``'s disk has room for every shard still missing."""
    needed = missing_bytes(folder, shards)
    free = shutil.disk_usage(folder).free
    if free < needed:
        missing = sum(1 for s in shards if not (folder / s.name).is_file())
        raise full_disk(folder, needed, free, f"the {missing} shard(s) of the pack not cached yet need")


def download(uri: str, shard: Shard, path: Path, *, fresh: bool) -> None:
    """``<uri>/<shard>`` into ``path`` through ``.<name>.part`` (resumed from its size unless
    ``fresh``), renamed when complete. A disk that fills meanwhile keeps the part (a later
    fetch resumes it) and is one ``DataError`` naming the cache."""
    part = _part(path.parent, shard)
    if fresh:
        part.unlink(missing_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if have > shard.bytes:
        part.unlink()
        have = 0
    free = shutil.disk_usage(path.parent).free
    if free < shard.bytes - have:
        raise full_disk(path.parent, shard.bytes - have, free, f"shard {shard.name} needs")
    fs, root = filesystem(uri)
    try:
        with fs.open_input_file(f"{root.rstrip('/')}/{shard.name}") as src, open(part, "ab") as dst:
            src.seek(have)
            while chunk := src.read(CHUNK):
                dst.write(chunk)
    except OSError as e:
        if e.errno in FULL_DISK:
            have = part.stat().st_size if part.is_file() else 0
            raise full_disk(path.parent, shard.bytes - have, shutil.disk_usage(path.parent).free,
                            f"shard {shard.name} ({e.strerror}; its part is kept: the next fetch resumes "
                            "it) needs") from None
        raise DataError(f"{uri.rstrip('/')}/{shard.name}: cannot read ({first_line(e)})") from None
    os.replace(part, path)


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def marker(folder: Path, shard: Shard) -> Path:
    return folder / f".{shard.name}.ok"


def mark(path: Path, shard: Shard, marker: Path) -> None:
    """Record in ``marker`` that ``path`` (as it is now: size, mtime) has the manifest's hash."""
    st = path.stat()
    with atomic_write(marker) as fh:
        json.dump({"sha256": shard.sha256, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}, fh)


def marked(path: Path, shard: Shard, marker: Path) -> bool:
    """Whether ``path`` was checked against ``shard``'s hash and has not changed since."""
    try:
        st, mark = path.stat(), json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return (mark.get("sha256") == shard.sha256 and st.st_size == shard.bytes == mark.get("bytes")
            and mark.get("mtime_ns") == st.st_mtime_ns)

