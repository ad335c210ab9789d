"""Packed datasets: tar shards plus a JSON manifest, read through a node-local cache.

A pack (written by ``depth-grid pack``, ``grid.experiment.pack``) is a folder or a bucket prefix:

    depth-grid-pack.json    the manifest, written last: layout settings, shards, per-item index
    shard-00000.tar ...     webdataset's layout: members ``<key>.rgb.<ext>`` and
                            ``<key>.depth.<ext>`` holding the original files' bytes

Reading (``open_pack``): the manifest is fetched and checked (its content hash, the shards' sizes
in the bucket, the layout flags), and gives the items with each member's offset and size in its
shard, so a shard is never parsed. A trial reads an item as a slice of the node-local copy of
its shard, memory-mapped once per process, checked against the member's CRC-32 (``Pack.read``);
an ``mm16`` depth is turned back into float32 metres (``trainables.mm16``). Each shard is
fetched at most once per node, under a file lock (``trainables.pack_cache``: resumable, checked
against the manifest's SHA-256, a full cache disk said before the first download). A cached
shard found damaged since (a CRC fails, or its size or mtime changed) is hashed again and, if
corrupt, fetched once more; a second mismatch is a ``DataError`` naming the shard. The cache
root is ``--cache-dir`` (where the split keeps its embeddings), or ``$DEPTH_GRID_CACHE_DIR`` on a
node that sets it.

Not mosaicml-streaming or litdata: see docs/DESIGN.md (their pins conflict with this project's,
and the plain tar layout keeps every encoded byte and opens with webdataset or ``tar``).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables import pack_cache
from trainables.data import DataError, DatasetSpec, Item, parse_crop
from trainables.io import is_uri
from trainables.pack_cache import CACHE_ENV, Shard, filesystem
from trainables.pack_cache import first_line as _first_line

MANIFEST = "depth-grid-pack.json"
PACK_FORMAT = "depth-grid-pack"
PACK_VERSION = 1
INDEX_COLUMNS = ("key", "rgb", "depth", "shard", "rgb_offset", "rgb_bytes", "rgb_crc32", "depth_offset",
                 "depth_bytes", "depth_crc32", "rgb_sha1")
_MAPS: dict[str, memoryview] = {}  # per process: a verified local shard -> its memory map
_BAD: set[str] = set()  # per process: shards found corrupt after their second fetch
_MANIFESTS: dict[str, dict[str, Any]] = {}  # per process: content hash -> the manifest open_pack read
_ROOM: set[str] = set()  # per process: cache folders whose disk was checked for the missing shards
FETCH_THREADS = 4


def is_pack(data: str | os.PathLike) -> bool:
    """A URI (only packs are read from a bucket) or a folder holding a pack's manifest."""
    return is_uri(data) or (Path(data).expanduser() / MANIFEST).is_file()


def content_hash(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's layout, shards and index (canonical JSON): the pack's identity."""
    body = {k: manifest[k] for k in ("layout", "shards", "index")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Pack:
    """A packed dataset as the trials see it: picklable, small (the item index travels in the
    items themselves). ``uri`` is the pack's URI or absolute local folder."""

    uri: str
    content_hash: str
    shards: tuple[Shard, ...]
    cache_root: str

    @property
    def folder(self) -> Path:
        """This pack's node-local cache folder: ``<cache root>/packs/<content hash>``."""
        return Path(os.environ.get(CACHE_ENV) or self.cache_root) / "packs" / self.content_hash[:16]

    def shard_uri(self, shard: Shard) -> str:
        return f"{self.uri.rstrip('/')}/{shard.name}"

    # ---- the driver: items from the manifest -------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The manifest ``open_pack`` read in this process, else read again from the pack."""
        if self.content_hash not in _MANIFESTS:
            manifest = read_manifest(self.uri)
            if manifest["content_hash"] != self.content_hash:
                raise DataError(f"{self.uri}: the pack changed since it was opened; start again")
            _MANIFESTS[self.content_hash] = manifest
        return _MANIFESTS[self.content_hash]

    def index(self, spec: DatasetSpec) -> list[Item]:
        """Every item in list order, with where its bytes sit and its RGB's SHA-1 (``Item.member``:
        the split's content key, known without reading the image)."""
        base = spec.root
        return [Item(name=row["rgb"], rgb=base / row["rgb"], depth=base / row["depth"], depth_rel=row["depth"],
                     member=tuple(row[c] for c in INDEX_COLUMNS[3:]))
                for row in _rows(self.manifest())]

    # ---- a trial: bytes from the node-local shard ----------------------------------------------

    def read(self, item: Item, which: str) -> memoryview | bytearray:
        """A member's bytes (a read-only view of the mapped shard: no copy; an mm16 depth: the
        ``.npy`` of metres it decodes to), checked against its CRC-32 (a cached shard damaged
        since it was fetched is hashed and fetched again, once)."""
        shard, *spans, _ = item.member
        at, n, crc = spans[:3] if which == "rgb" else spans[3:]
        data = self._map(shard)[at:at + n]
        if zlib.crc32(data) != crc:
            self._close(shard)
            self.local_shard(shard, recheck=True)
            data = self._map(shard)[at:at + n]
            if zlib.crc32(data) != crc:
                raise DataError(f"{self.shard_uri(self.shards[shard])}: corrupt shard ({item.name}'s {which} bytes "
                                "do not match the manifest); pack the dataset again")
        if which == "depth" and item.depth.suffix.lower() == ".npy" and self.depth_encoding == "mm16":
            from trainables.mm16 import to_metres_npy

            return to_metres_npy(data)
        return data

    @property
    def depth_encoding(self) -> str:
        """How the pack stores ``.npy`` depths (``grid.experiment.pack.DEPTH_ENCODINGS``)."""
        return self.manifest().get("layout", {}).get("depth_encoding", "exact")

    def fetch(self) -> None:
        """Every shard into the node cache, checked (``depth-grid check``: a corrupt or missing
        shard is one error, before any item is read)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            list(pool.map(self.local_shard, range(len(self.shards))))

    def _path(self, shard: Shard) -> Path:
        return Path(self.uri) / shard.name if not is_uri(self.uri) else self.folder / shard.name

    def _map(self, index: int) -> memoryview:
        """The shard mapped into memory, once per process (forked loader workers share it)."""
        key = str(self._path(self.shards[index]))
        if key not in _MAPS:
            with open(self.local_shard(index), "rb") as fh:
                view = memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
            _MAPS.setdefault(key, view)  # another thread's, if it mapped it meanwhile
        return _MAPS[key]

    def _close(self, index: int) -> None:
        _MAPS.pop(str(self._path(self.shards[index])), None)  # unmapped once no array views it

    def local_shard(self, index: int, *, recheck: bool = False) -> Path:
        """The shard's node-local copy, fetched and checked against the manifest on first use
        (a local pack's shard is read in place, checked once per node). ``recheck``: hash it
        again even if it was checked (a member's CRC failed), and fetch it again if it is bad."""
        shard = self.shards[index]
        if self.shard_uri(shard) in _BAD:
            raise self._corrupt(shard)
        local = not is_uri(self.uri)
        path, marker = self._path(shard), pack_cache.marker(self.folder, shard)
        if not recheck and pack_cache.marked(path, shard, marker):
            return path
        self.folder.mkdir(parents=True, exist_ok=True)
        if not local and str(self.folder) not in _ROOM:  # before the first download: room for them all
            pack_cache.check_room(self.folder, self.shards)
            _ROOM.add(str(self.folder))
        from filelock import FileLock

        with FileLock(str(self.folder / f".{shard.name}.lock")):  # one fetch per node, whoever asks
            if not recheck and pack_cache.marked(path, shard, marker):
                return path  # another process fetched it meanwhile
            fetched = 0
            while True:
                if path.is_file() and pack_cache.sha256(path) == shard.sha256:
                    pack_cache.mark(path, shard, marker)
                    return path
                if local or fetched == 2:  # a bad copy is fetched again once; then it is the bucket's
                    break
                path.unlink(missing_ok=True)
                pack_cache.download(self.uri, shard, path, fresh=fetched == 1)
                fetched += 1
        _BAD.add(self.shard_uri(shard))
        raise self._corrupt(shard)

    def _corrupt(self, shard: Shard) -> DataError:
        twice = "" if not is_uri(self.uri) else ", fetched twice"
        return DataError(f"{self.shard_uri(shard)}: corrupt shard (its SHA-256 does not match the manifest's "
                         f"{shard.sha256[:12]}...{twice}); pack the dataset again or re-upload the shard")


def _rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    columns = manifest["index"]["columns"]
    return [dict(zip(columns, row, strict=True)) for row in manifest["index"]["rows"]]


# ---- opening a pack ---------------------------------------------------------------------------

def read_manifest(uri: str) -> dict[str, Any]:
    """The pack's manifest at ``uri`` (a URI or a local folder), checked against its content hash."""
    fs, root = filesystem(uri)
    where = f"{uri.rstrip('/')}/{MANIFEST}"
    try:
        with fs.open_input_stream(f"{root.rstrip('/')}/{MANIFEST}") as fh:
            manifest = json.loads(fh.read())
    except FileNotFoundError:
        raise DataError(f"{where}: not found: {uri} is not a dataset pack (make one with `depth-grid pack`)") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{where}: cannot read ({_first_line(e)}); check the URI and the credentials") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise DataError(f"{where}: not a depth-grid pack manifest")
    if manifest.get("version") != PACK_VERSION:
        raise DataError(f"{where}: pack version {manifest.get('version')} is not {PACK_VERSION}; pack it again")
    try:
        ok = content_hash(manifest) == manifest.get("content_hash")
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError(f"{where}: the manifest does not match its content hash (edited or damaged); pack again")
    return manifest


def _check_shards(uri: str, shards: tuple[Shard, ...]) -> None:
    """Each shard the manifest lists is there with the manifest's size (one listing)."""
    import pyarrow.fs as pafs

    fs, root = filesystem(uri)
    try:
        found = {Path(i.path).name: i.size for i in fs.get_file_info(pafs.FileSelector(root))}
    except OSError as e:
        raise DataError(f"{uri}: cannot list the pack's shards ({_first_line(e)})") from None
    for shard in shards:
        size = found.get(shard.name)
        if size != shard.bytes:
            there = "it is missing" if size is None else f"it has {size}"
            raise DataError(f"{uri.rstrip('/')}/{shard.name}: the manifest does not match its shards (it lists "
                            f"{shard.bytes} bytes, {there}); upload the whole pack again")


def _layout(manifest: dict[str, Any], where: str, flags: dict[str, Any]) -> dict[str, Any]:
    """The pack's layout settings; a flag given that says otherwise is refused, naming both."""
    layout = dict(manifest["layout"])
    recorded = {"format": layout["format"], "list_file": layout["list"], "depth_scale": float(layout["depth_scale"]),
                "crop": tuple(layout["crop"]) if layout["crop"] else None}
    given = {"format": flags.get("format"), "list_file": flags.get("list_file"),
             "depth_scale": None if flags.get("depth_scale") is None else float(flags["depth_scale"]),
             "crop": parse_crop(flags["crop"]) if flags.get("crop") is not None else None}
    if flags.get("crop") == "none":
        given["crop"] = "none"
    for key, value in given.items():
        mine = None if value == "none" else value
        if value is not None and mine != recorded[key]:
            option = "--" + {"list_file": "list"}.get(key, key).replace("_", "-")
            raise DataError(f"{where}: packed with {option} {_show(recorded[key])}, not {_show(mine)}; "
                            f"drop {option} (a pack keeps its layout) or pack the data again with it")
    return recorded


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else f"{value:g}" if isinstance(
        value, float) else str(value)


def open_pack(data: str | os.PathLike, cache_dir: str | os.PathLike, *, images_only: bool = False,
              **flags: Any) -> DatasetSpec:
    """The ``DatasetSpec`` of the pack at ``data`` (a folder or a URI): its manifest checked and
    kept in memory, its shards' sizes checked, the layout flags given (``format``, ``list_file``,
    ``depth_scale``, ``crop``; None: the pack's) checked against it. Reads no shard and writes
    nothing: shards reach ``<cache_dir>/packs/`` when an item is first read. A test pack (images
    only, ``grid.experiment.pack``) is refused unless ``images_only`` (predicting, submitting)."""
    uri = str(data) if is_uri(data) else str(Path(data).expanduser().resolve())
    manifest = read_manifest(uri)
    if manifest["layout"].get("test") and not images_only:
        raise DataError(f"{uri.rstrip('/')}/{MANIFEST}: a test pack (images only, no depth): predict and submit "
                        "read it; pack the data with its depth for this command")
    shards = tuple(Shard(s["name"], int(s["bytes"]), s["sha256"], int(s["items"])) for s in manifest["shards"])
    _check_shards(uri, shards)
    layout = _layout(manifest, f"{uri.rstrip('/')}/{MANIFEST}", flags)
    pack = Pack(uri=uri, content_hash=manifest["content_hash"], shards=shards,
                cache_root=str(Path(cache_dir).expanduser().resolve()))
    _MANIFESTS[pack.content_hash] = manifest
    return DatasetSpec(root=pack.folder, format=layout["format"], list_file=layout["list_file"],
                       depth_scale=layout["depth_scale"], crop=layout["crop"], pack=pack)


def dataset_spec(data: str | os.PathLike, cache_dir: str | os.PathLike, *, images_only: bool = False,
                 **flags: Any) -> DatasetSpec:
    """``--data``'s ``DatasetSpec``: a pack (a URI, or a folder with a manifest) through
    ``open_pack`` (a test pack only with ``images_only``), else a dataset folder through
    ``DatasetSpec.detect``; ``flags`` are the layout options (``None``: detected, or the pack's)."""
    if is_pack(data):
        return open_pack(data, cache_dir, images_only=images_only, **flags)
    return DatasetSpec.detect(Path(data), **{k: v for k, v in flags.items() if v is not None})
