"""``depth-grid pack --depth mm16``: float32 metres as whole millimetres, zstd-compressed.

A packed member ``<key>.depth.mm16.npy.zst`` is a standard zstd frame (pyarrow's codec, the
library the project already reads buckets with) holding a standard ``.npy`` of uint16
millimetres: ``zstd -d`` then ``numpy.load`` opens it. 0 stays 0 (invalid); 1 mm..65.535 m;
at most 0.5 mm off. Why not a 16-bit PNG (the first mm16 packs, still read): its decode cost
~1.2 ms a 426x560 frame where the loose ``.npy`` costs 0.1 ms, so packed reading ran at 0.81 of
the loose files' rate; zstd decodes it in ~0.3 ms with the conversion to metres, at about 5%
of the float32 bytes (benchmarks/README.md, "Packed data").
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np

LEVEL = 9  # zstd level: packing ~4 ms a frame; smaller and as fast to read as the lower levels
MAX_M = 65.535
PNG_MAGIC = b"\x89PNG"


def encode(metres: np.ndarray) -> bytes:
    """float32 metres (0: invalid) -> the member's bytes. The caller checks ``<= MAX_M``."""
    mm = np.where(metres > 0, np.clip(np.rint(metres * 1000.0), 1, 65535), 0).astype(np.uint16)
    buffer = io.BytesIO()
    np.save(buffer, mm)
    return _codec().compress(buffer.getvalue(), asbytes=True)


def frame_size(frame: bytes | memoryview) -> int:
    """The content size a zstd frame's header records (RFC 8878, 3.1.1.1): pyarrow's decoder
    needs it and has no call that reads it."""
    if bytes(frame[:4]) != b"\x28\xb5\x2f\xfd" or len(frame) < 6:
        raise ValueError("not a zstd frame")
    descriptor = frame[4]
    fcs_flag, single = descriptor >> 6, (descriptor >> 5) & 1
    at = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3]  # window byte, dictionary id
    width = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if width == 0:
        raise ValueError("the zstd frame records no content size")
    size = int.from_bytes(bytes(frame[at:at + width]), "little")
    return size + 256 if width == 2 else size


@lru_cache(maxsize=8)
def _header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _millimetres(data: bytes | memoryview) -> np.ndarray:
    if bytes(data[:4]) == PNG_MAGIC:  # a pack made before the zstd members
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img, dtype=np.uint16)
    raw = _codec().decompress(data, decompressed_size=frame_size(data))
    head = memoryview(raw)
    shape, offset = _npy_header(bytes(head[:10 + int.from_bytes(head[8:10], "little")]))  # a version 1.0 header
    return np.frombuffer(raw, np.uint16, count=int(np.prod(shape)), offset=offset).reshape(shape)


@lru_cache(maxsize=1)
def _codec():
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=LEVEL)


@lru_cache(maxsize=8)
def _npy_header(head: bytes) -> tuple[tuple[int, ...], int]:
    """The shape and data offset a ``.npy`` header gives (parsed once per frame size: numpy
    parses it with ``ast``, a tenth of the decode's time)."""
    fp = io.BytesIO(head)
    np.lib.format.read_magic(fp)
    shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    if dtype != np.uint16:
        raise ValueError(f"an mm16 member holds {dtype}, not uint16")
    return shape, fp.tell()


def to_metres_npy(data: bytes | memoryview) -> bytearray:
    """A member's bytes as the ``.npy`` of float32 metres the item's list names (what the loose
    file held, to within 0.5 mm), in a writable buffer: the reader takes the array over it
    without copying it again (``trainables.data._to_metres``)."""
    mm = _millimetres(data)
    header = _header(mm.shape)
    out = bytearray(len(header) + 4 * mm.size)
    out[:len(header)] = header
    metres = np.frombuffer(out, np.float32, offset=len(header)).reshape(mm.shape)
    np.divide(mm, np.float32(1000.0), out=metres, dtype=np.float32)
    return out
