"""``depth-grid pack``: a dataset as tar shards plus a manifest, in a folder or a bucket.

Every item is read and checked first (``depth-grid check``'s checks, ``grid.doctor``): a bad item
stops the pack before anything is written, naming it. The target must be new or empty, so
nothing there is replaced. Shards hold each file's original bytes (RGB never re-encoded, depth
exact: 0 m error) in list order, as webdataset's ``<key>.rgb.<ext>`` / ``<key>.depth.<ext>``
members; each member's offset is recorded, so readers never parse a tar. ``depth="mm16"`` stores
a ``.npy`` depth (float32 metres) as zstd-compressed uint16 millimetres instead
(``trainables.mm16``): at most 0.5 mm off, about a twentieth of the bytes; readers turn it back
into metres. The manifest is written
last: a folder or prefix without it is not a pack. ``trainables.packed`` reads packs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from trainables.data import DataError, DatasetSpec, Item, index_dataset
from trainables.io import atomic_write
from trainables.packed import (
    INDEX_COLUMNS,
    MANIFEST,
    PACK_FORMAT,
    PACK_VERSION,
    content_hash,
    filesystem,
    is_uri,
)

SHARD_MB = 256  # default shard size: ~100 shards for the competition's 25 GB, each one ranged download
# How a .npy depth (float32 metres) is stored: its bytes, or rounded to whole millimetres,
# zstd-compressed (trainables.mm16: 0 = invalid, as in the loose file's 0/NaN/inf; 1 mm..65.535 m).
# PNG depths keep their bytes.
DEPTH_ENCODINGS = {"exact": 0.0, "mm16": 0.0005}  # name -> the largest error in metres
SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class PackSummary:
    """What ``pack_dataset`` wrote."""

    out: str
    items: int
    shards: int
    bytes: int
    loose_bytes: int
    content_hash: str
    test: bool = False  # a test list's images only

    def line(self) -> str:
        ratio = self.bytes / self.loose_bytes if self.loose_bytes else float("nan")
        what = "items (images only: a test list)" if self.test else "items"
        return (f"packed {self.items} {what} into {self.shards} shard(s) at {self.out}: {self.bytes / 2**20:.1f} MiB "
                f"({ratio:.3f} of the loose files' {self.loose_bytes / 2**20:.1f} MiB), content hash "
                f"{self.content_hash[:16]}")


class _Counting:
    """A write-only stream that hashes (SHA-256) and counts what passes through it."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink, self.sha256, self.n = sink, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        self.sha256.update(data)
        self.n += len(data)
        return len(data)

    def tell(self) -> int:
        return self.n


class _Target:
    """The pack's folder or bucket prefix: refused unless new or empty; files written whole."""

    def __init__(self, out: str) -> None:
        self.uri = out if is_uri(out) else str(Path(out).expanduser().resolve())
        self.fs, self.root = filesystem(self.uri)
        self.written: list[str] = []

    def check_empty(self) -> None:
        import pyarrow.fs as pafs

        try:
            if self.fs.get_file_info(self.root).type == pafs.FileType.File:
                raise DataError(f"{self.uri}: is a file; --out takes a new or empty folder (or bucket prefix)")
            found = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        except OSError as e:
            raise DataError(f"{self.uri}: cannot read ({_first(e)}); check the URI and the credentials") from None
        if found:
            raise DataError(f"{self.uri}: not empty ({len(found)} entries); pack into a new folder or prefix "
                            "(nothing there is replaced)")

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        path = f"{self.root.rstrip('/')}/{name}"
        self.written.append(path)
        if not is_uri(self.uri):  # a temp file renamed into place
            with atomic_write(path, "wb") as fh:
                yield fh
            return
        try:  # an object appears whole when its upload completes
            with self.fs.open_output_stream(path) as fh:
                yield fh
        except OSError as e:
            raise DataError(f"{self.uri}/{name}: cannot write ({_first(e)})") from None

    def remove_written(self) -> None:
        """After a failure: what this pack wrote, so the target is empty again."""
        for path in self.written:
            with contextlib.suppress(OSError):
                self.fs.delete_file(path)


def _first(error: BaseException) -> str:
    return next((ln.strip() for ln in str(error).splitlines() if ln.strip()), type(error).__name__)


def check_all(spec: DatasetSpec, workers: int | None = None, test: bool = False) -> None:
    """Every item read as ``depth-grid check`` reads it (``--test``: the images only); a
    ``DataError`` naming the bad ones."""
    from grid.doctor import check_dataset

    report = check_dataset(spec, test=test, workers=workers, progress=False)
    bad = report.bad
    if bad:
        shown = "; ".join(f"{r.name}: {' '.join(r.problems)}" for r in bad[:SHOWN_PROBLEMS])
        more = f" (and {len(bad) - SHOWN_PROBLEMS} more)" if len(bad) > SHOWN_PROBLEMS else ""
        raise DataError(f"{len(bad)} of {len(report.items)} item(s) cannot be packed, nothing written: {shown}{more}; "
                        f"`depth-grid check --data {spec.root}` lists each")


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> tuple[int, int, int]:
    """Add ``data`` as member ``name``; its (offset, size, CRC-32) in the shard."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed: the same data packs to the same bytes
    tar.addfile(info, io.BytesIO(data))
    return tar.offset - tarfile.BLOCKSIZE * -(-len(data) // tarfile.BLOCKSIZE), len(data), zlib.crc32(data)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def mm16_member(item: Item, raw: bytes) -> bytes:
    """A ``.npy`` depth in metres as whole millimetres (``trainables.mm16``); a ``DataError``
    naming the item when some depth lies beyond 65.535 m."""
    from trainables import mm16
    from trainables.data import _decode_depth, _to_metres

    metres = _to_metres(_decode_depth(item.depth, raw), item.depth, 1.0)
    if metres.max() > mm16.MAX_M:
        raise DataError(f"{item.depth}: depth up to {metres.max():.3f} m does not fit 16-bit millimetres "
                        f"(<= {mm16.MAX_M} m): pack with --depth exact")
    return mm16.encode(metres)


def _write_shards(target: _Target, items: list[Item], shard_bytes: int, depth: str = "exact", test: bool = False
                  ) -> tuple[list[dict], list[list], int]:
    """The shards (name, bytes, sha256, items) and the index rows; items in list order."""
    shards: list[dict] = []
    rows: list[list] = []
    loose = 0
    start = 0
    while start < len(items):
        name = f"shard-{len(shards):05d}.tar"
        with target.open(name) as sink:
            out = _Counting(sink)
            with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                end = start
                while end < len(items) and (end == start or tar.offset < shard_bytes):
                    item, key = items[end], f"{end:08d}"
                    rgb, raw = _read(item.rgb), b"" if test else _read(item.depth)
                    loose += len(rgb) + len(raw)
                    rgb_at = _member(tar, f"{key}.rgb{item.rgb.suffix.lower()}", rgb)
                    if test:  # a test list's images only: its depth entries name the predictions
                        depth_at = (0, 0, 0)
                    elif depth == "mm16" and item.depth.suffix.lower() == ".npy":
                        depth_at = _member(tar, f"{key}.depth.mm16.npy.zst", mm16_member(item, raw))
                    else:
                        depth_at = _member(tar, f"{key}.depth{item.depth.suffix.lower()}", raw)
                    rows.append([key, item.name, item.depth_rel, len(shards), *rgb_at, *depth_at,
                                 hashlib.sha1(rgb).hexdigest()])
                    end += 1
        shards.append({"name": name, "bytes": out.n, "sha256": out.sha256.hexdigest(), "items": end - start})
        start = end
    return shards, rows, loose


def pack_dataset(spec: DatasetSpec, out: str, *, shard_mb: float = SHARD_MB, workers: int | None = None,
                 depth: str = "exact") -> PackSummary:
    """Pack ``spec``'s dataset into ``out`` (a new or empty folder, or a URI pyarrow opens:
    ``s3://`` with ``AWS_ENDPOINT_URL`` for S3-compatible stores, ``gs://``); ``depth``: how a
    ``.npy`` depth is stored (``DEPTH_ENCODINGS``: ``exact`` bytes, or ``mm16``).

    A list none of whose depth files exist (a test list: ``test_list.txt``) packs its images
    only, as a test pack (``layout.test``): ``predict`` and ``submit`` read it, the commands that
    need depth refuse it.

    Raises:
        DataError: a bad item (named; nothing written), a target that is not empty, a URI that
            cannot be written.
    """
    if depth not in DEPTH_ENCODINGS:
        raise DataError(f"--depth {depth}: unknown; valid: {', '.join(DEPTH_ENCODINGS)}")
    target = _Target(out)
    target.check_empty()
    items = index_dataset(spec, require_depth=False)
    test = not any(item.depth.is_file() for item in items)  # a test list: images only
    items = items if test else index_dataset(spec)  # else every depth file must be there
    check_all(spec, workers, test)
    try:
        shards, rows, loose = _write_shards(target, items, int(shard_mb * 2**20), depth, test)
        layout = {"format": spec.format, "list": spec.list_path.name, "depth_scale": spec.depth_scale,
                  "crop": list(spec.crop) if spec.crop else None, "key_order": "list",
                  "members": ["<key>.rgb<ext>", "<key>.depth<ext>"], "depth_encoding": depth,
                  "depth_max_error_m": DEPTH_ENCODINGS[depth]}
        if test:  # only then: a pack with depth keeps the layout (and content hash) it always had
            layout.update(members=["<key>.rgb<ext>"], depth_encoding="none", test=True)
        manifest: dict[str, Any] = {
            "format": PACK_FORMAT, "version": PACK_VERSION, "layout": layout,
            "items": len(rows), "loose_bytes": loose, "shards": shards,
            "index": {"columns": list(INDEX_COLUMNS), "rows": rows},
        }
        manifest["content_hash"] = content_hash(manifest)
        with target.open(MANIFEST) as fh:  # last: only a complete pack has one
            fh.write(json.dumps(manifest, separators=(",", ":")).encode())
    except BaseException:
        target.remove_written()
        raise
    return PackSummary(target.uri, len(rows), len(shards), sum(s["bytes"] for s in shards), loose,
                       manifest["content_hash"], test)
