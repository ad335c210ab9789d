"""``depth-grid pack`` and packed ``--data``: a folder, and a real S3 server (moto, server mode, on
127.0.0.1) as the bucket. Packed data reads and trains as the loose files do; each shard is
fetched at most once per node cache; every bad input is one line, exit 2, nothing lost."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from s3_server import S3Server, s3_server_fixture  # noqa: F401  (the fixture)

from grid.cli import command
from grid.synth import generate
from trainables.data import DatasetSpec, index_dataset, load_pair
from trainables.mm16 import encode, frame_size, to_metres_npy
from trainables.packed import MANIFEST, content_hash, open_pack

ROOT = Path(__file__).resolve().parents[1]
pack_main, check_main, split_main = command("pack"), command("check"), command("split")
METRICS = ["si_rmse", "abs_rel", "rmse", "delta1"]


@pytest.fixture(scope="module", name="scenes")  # named: tests/test_pack_commands.py imports it
def scenes_fixture(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scenes"), scenes=5, views=3, size=(40, 56), seed=1)


@pytest.fixture(scope="module", name="s3_pack")
def s3_pack_fixture(s3_server: S3Server, scenes: Path) -> str:
    """The scenes packed into a bucket, 4 shards."""
    uri = s3_server.bucket("packs") + "/scenes"
    assert pack_main(["--data", str(scenes), "--out", uri, "--shard-mb", "0.05"]) == 0
    return uri


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def _loose_bytes(scenes: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in scenes.iterdir() if p.suffix in (".png", ".npy")}


# ---- packing ----------------------------------------------------------------------------------

def test_pack_keeps_every_byte_in_webdataset_layout(scenes: Path, tmp_path: Path, capsys):
    out = tmp_path / "packed"
    assert pack_main(["--data", str(scenes), "--out", str(out), "--shard-mb", "0.05"]) == 0
    assert "packed 15 items into 4 shard(s)" in capsys.readouterr().out
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["layout"] == {"format": "cil", "list": "train_list.txt", "depth_scale": 1.0, "crop": None,
                                  "key_order": "list", "members": ["<key>.rgb<ext>", "<key>.depth<ext>"],
                                  "depth_encoding": "exact", "depth_max_error_m": 0.0}
    assert [s["items"] for s in manifest["shards"]] == [4, 4, 4, 3]
    loose, members = _loose_bytes(scenes), {}
    for shard in manifest["shards"]:
        path = out / shard["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        with tarfile.open(path) as tar:
            members.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    rows = [dict(zip(manifest["index"]["columns"], r, strict=True)) for r in manifest["index"]["rows"]]
    listed = [line.split() for line in (scenes / "train_list.txt").read_text().split("\n") if line.strip()]
    assert [[r["rgb"], r["depth"]] for r in rows] == listed  # list order
    for r in rows:  # the original bytes, RGB and depth: nothing re-encoded, depth exact (0 m)
        assert members[f"{r['key']}.rgb.png"] == loose[r["rgb"]]
        assert members[f"{r['key']}.depth.npy"] == loose[r["depth"]]
    # the same data packs to the same bytes
    assert pack_main(["--data", str(scenes), "--out", str(tmp_path / "again"), "--shard-mb", "0.05"]) == 0
    assert json.loads((tmp_path / "again" / MANIFEST).read_text())["content_hash"] == manifest["content_hash"]


def test_webdataset_reads_a_shard(scenes: Path, tmp_path: Path):
    wds = pytest.importorskip("webdataset")
    assert pack_main(["--data", str(scenes), "--out", str(tmp_path / "p")]) == 0
    samples = list(wds.WebDataset(str(tmp_path / "p" / "shard-00000.tar"), shardshuffle=False).decode())
    assert len(samples) == 15
    first = samples[0]
    assert first["__key__"] == "00000000" and first["depth.npy"].shape == (40, 56)


def test_packed_items_read_as_the_loose_files(scenes: Path, tmp_path: Path):
    assert pack_main(["--data", str(scenes), "--out", str(tmp_path / "p"), "--shard-mb", "0.05"]) == 0
    loose = DatasetSpec.detect(scenes)
    packed = open_pack(tmp_path / "p", tmp_path / "cache")
    a, b = index_dataset(loose), index_dataset(packed)
    assert [it.name for it in a] == [it.name for it in b]
    for x, y in zip(a, b, strict=True):
        for flip in (False, True):
            (ra, da), (rb, db) = load_pair(x, loose, flip=flip), load_pair(y, packed, flip=flip)
            assert np.array_equal(ra, rb) and np.array_equal(da, db)


def test_mm16_depth_is_within_half_a_millimetre_and_smaller(scenes: Path, tmp_path: Path, capsys):
    """--depth mm16: every valid depth within 0.5 mm of the loose file's, invalid pixels stay
    invalid, RGB byte-identical, and the pack much smaller than the exact one."""
    assert pack_main(["--data", str(scenes), "--out", str(tmp_path / "exact")]) == 0
    assert pack_main(["--data", str(scenes), "--out", str(tmp_path / "mm"), "--depth", "mm16"]) == 0
    out = capsys.readouterr().out
    loose = DatasetSpec.detect(scenes)
    packed = open_pack(tmp_path / "mm", tmp_path / "cache")
    manifest = json.loads((tmp_path / "mm" / MANIFEST).read_text())
    assert manifest["layout"]["depth_encoding"] == "mm16" and manifest["layout"]["depth_max_error_m"] == 0.0005
    worst = 0.0
    for x, y in zip(index_dataset(loose), index_dataset(packed), strict=True):
        (ra, da), (rb, db) = load_pair(x, loose), load_pair(y, packed)
        assert np.array_equal(ra, rb) and db.dtype == np.float32
        assert np.array_equal(da > 0, db > 0)  # the same valid pixels
        worst = max(worst, float(np.abs(da - db).max()))
    assert 0 < worst <= 0.0005 + 1e-6, worst  # rounded, and by no more than half a millimetre
    depth_bytes = {}  # the depth members (at 40x56 the tar's 512-byte blocks would hide them)
    for p in ("exact", "mm"):
        index = json.loads((tmp_path / p / MANIFEST).read_text())["index"]
        depth_bytes[p] = sum(row[index["columns"].index("depth_bytes")] for row in index["rows"])
    assert depth_bytes["mm"] < 0.5 * depth_bytes["exact"], depth_bytes
    with tarfile.open(tmp_path / "mm" / "shard-00000.tar") as tar:  # a zstd frame holding a standard .npy
        member = tar.getmembers()[1]
        frame = tar.extractfile(member).read()
    assert member.name == "00000000.depth.mm16.npy.zst"
    mm = np.load(io.BytesIO(pa.Codec("zstd").decompress(frame, decompressed_size=frame_size(frame))))
    assert mm.dtype == np.uint16 and mm.shape == (40, 56)
    assert "packed 15 items" in out


def test_mm16_members_read_back_as_metres_zstd_and_the_first_packs_png():
    """``trainables.mm16``: the zstd member, and the 16-bit PNG the first mm16 packs stored."""
    metres = np.array([[0.0, 0.0004, 65.535], [1.5, 0.0026, 3.0]], np.float32)
    mm = np.array([[0, 1, 65535], [1500, 3, 3000]], np.uint16)  # 0 stays invalid; >= 1 mm once valid
    png = io.BytesIO()
    Image.fromarray(mm).save(png, format="PNG")
    for member in (encode(metres), png.getvalue()):
        back = np.load(io.BytesIO(bytes(to_metres_npy(member))))
        assert back.dtype == np.float32 and np.array_equal(back, mm.astype(np.float32) / np.float32(1000))


def test_mm16_refuses_depth_beyond_its_range(scenes: Path, tmp_path: Path, capsys):
    far = Path(shutil.copytree(scenes, tmp_path / "far"))
    name = sorted(far.glob("*_depth.npy"))[2]
    np.save(name, np.full((40, 56), 70.0, np.float32))
    assert pack_main(["--data", str(far), "--out", str(tmp_path / "p"), "--depth", "mm16"]) == 2
    assert f"{name}: depth up to 70.000 m does not fit 16-bit millimetres" in _error(capsys)
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_a_bad_item_stops_pack_before_anything_is_written(scenes: Path, tmp_path: Path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for p in scenes.iterdir():
        (data / p.name).write_bytes(p.read_bytes())
    bad = sorted(data.glob("*_rgb.png"))[3]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    out = tmp_path / "out"
    assert pack_main(["--data", str(data), "--out", str(out)]) == 2
    err = _error(capsys)
    assert bad.name in err and "nothing written" in err
    assert not out.exists()


def test_pack_refuses_a_target_that_is_not_empty(scenes: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert pack_main(["--data", str(scenes), "--out", str(out)]) == 2
    assert "not empty" in _error(capsys)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


# ---- the bucket -------------------------------------------------------------------------------

def test_check_from_s3_reports_as_the_loose_folder(s3_server: S3Server, s3_pack: str, scenes: Path,
                                                   tmp_path: Path, capsys):
    assert check_main(["--data", str(scenes)]) == 0
    loose = capsys.readouterr().out.splitlines()
    cache = tmp_path / "node-cache"
    before = len(s3_server.requests())
    assert check_main(["--data", s3_pack, "--cache-dir", str(cache)]) == 0
    packed = capsys.readouterr().out.splitlines()
    assert packed[1:] == loose[1:]  # counts, sizes, depth range, valid share (line 0 names the folder)
    shards = [f"/packs/scenes/shard-{i:05d}.tar" for i in range(4)]
    assert [s3_server.gets(s) for s in shards] == [1, 1, 1, 1]
    assert check_main(["--data", s3_pack, "--cache-dir", str(cache)]) == 0  # a second reader: from the cache
    assert [s3_server.gets(s) for s in shards] == [1, 1, 1, 1]
    assert not any(m == "PUT" for m, _ in s3_server.requests()[before:])  # reading writes nothing there


def test_a_pack_in_a_bucket_gets_its_manifest_last(s3_server: S3Server, s3_pack: str, scenes: Path, tmp_path: Path,
                                                   capsys):
    writes = [path for method, path in s3_server.requests() if method in ("PUT", "POST")
              and path.startswith("/packs/scenes/")]
    first = writes.index(f"/packs/scenes/{MANIFEST}")  # a multipart upload: start, part(s), complete
    assert set(writes[first:]) == {f"/packs/scenes/{MANIFEST}"}
    assert {w.rsplit("/", 1)[1] for w in writes[:first]} == {f"shard-{i:05d}.tar" for i in range(4)}
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in scenes.iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    np.save(bad / "sample_000007_depth.npy", np.zeros((3, 4, 5), np.float32))  # not 2-D
    assert pack_main(["--data", str(bad), "--out", "s3://packs/bad"]) == 2
    assert "sample_000007" in _error(capsys)
    assert not [p for m, p in s3_server.requests() if m in ("PUT", "POST") and p.startswith("/packs/bad")]


def test_pack_refuses_a_bucket_prefix_that_is_not_empty(s3_server: S3Server, s3_pack: str, scenes: Path, capsys):
    s3 = s3_server.client()
    s3.put_object(Bucket="packs", Key="taken/keep.txt", Body=b"mine")
    assert pack_main(["--data", str(scenes), "--out", "s3://packs/taken"]) == 2
    assert "s3://packs/taken: not empty" in _error(capsys)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="packs", Prefix="taken/")["Contents"]]
    assert keys == ["taken/keep.txt"] and s3.get_object(Bucket="packs", Key="taken/keep.txt")["Body"].read() == b"mine"


def test_a_corrupt_cached_shard_is_fetched_again_once(s3_server: S3Server, s3_pack: str, tmp_path: Path):
    cache = tmp_path / "cache"
    assert check_main(["--data", s3_pack, "--cache-dir", str(cache)]) == 0
    (cached,) = cache.glob("packs/*/shard-00001.tar")
    data = bytearray(cached.read_bytes())
    data[700] ^= 0xFF
    cached.write_bytes(bytes(data))
    before = s3_server.gets("/packs/scenes/shard-00001.tar")
    assert check_main(["--data", s3_pack, "--cache-dir", str(cache)]) == 0
    assert s3_server.gets("/packs/scenes/shard-00001.tar") == before + 1
    assert s3_server.gets("/packs/scenes/shard-00000.tar") == before  # the sound ones are not


def test_a_partial_download_is_resumed_or_fetched_again(s3_server: S3Server, s3_pack: str, tmp_path: Path):
    spec = open_pack(s3_pack, tmp_path / "cache")
    whole = s3_server.client().get_object(Bucket="packs", Key="scenes/shard-00000.tar")["Body"].read()
    folder = spec.pack.folder
    folder.mkdir(parents=True)
    (folder / ".shard-00000.tar.part").write_bytes(whole[:5000])  # a download cut short
    (folder / ".shard-00001.tar.part").write_bytes(b"x" * 5000)  # a damaged one
    gets = [s3_server.gets(f"/packs/scenes/shard-0000{i}.tar") for i in (0, 1)]
    spec.pack.fetch()
    assert (folder / "shard-00000.tar").read_bytes() == whole
    assert s3_server.gets("/packs/scenes/shard-00000.tar") == gets[0] + 1  # the rest only
    assert s3_server.gets("/packs/scenes/shard-00001.tar") == gets[1] + 2  # resumed, wrong, fetched afresh
    assert not list(folder.glob(".*.part"))


def test_a_node_sets_its_own_cache_root(s3_server: S3Server, s3_pack: str, tmp_path: Path, monkeypatch):
    spec = open_pack(s3_pack, tmp_path / "driver")
    monkeypatch.setenv("DEPTH_GRID_CACHE_DIR", str(tmp_path / "node"))  # as a worker node's environment
    spec.pack.local_shard(2)
    assert list((tmp_path / "node" / "packs").glob("*/shard-00002.tar"))
    assert not list((tmp_path / "driver" / "packs").glob("*/shard-*.tar"))


def test_split_of_a_pack_is_the_split_of_its_folder(s3_pack: str, scenes: Path, tmp_path: Path, capsys,
                                                     mobilenet_weights):
    cache = tmp_path / "cache"
    assert split_main(["--data", str(scenes), "--cache-dir", str(cache), "--device", "cpu"]) == 0
    loose = capsys.readouterr().out.splitlines()[-1]
    assert split_main(["--data", s3_pack, "--cache-dir", str(cache), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == loose  # the same cache file: the same fingerprint
    assert len(list((cache / "fingerprints").iterdir())) == 1  # the folder's, found again by a stat each


def test_the_split_fingerprint_of_a_folder_is_a_stat_per_file(scenes: Path, tmp_path: Path, capsys,
                                                                mobilenet_weights):
    """Once a folder was split, its fingerprint comes from names, sizes and mtimes: an image
    changed in place with its size and mtime kept is not read (the cached split is used); a
    touched one is hashed again (and, corrupt, named)."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    for p in scenes.iterdir():
        (data / p.name).write_bytes(p.read_bytes())
    args = ["--data", str(data), "--cache-dir", str(cache), "--device", "cpu"]
    assert split_main(args) == 0
    first = capsys.readouterr().out.splitlines()[-1]
    rgb = data / "sample_000004_rgb.png"
    st, body = rgb.stat(), bytearray(rgb.read_bytes())
    body[len(body) // 2] ^= 0xFF  # the same size, another content (a corrupt PNG body)
    rgb.write_bytes(bytes(body))
    os.utime(rgb, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert split_main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == first  # nothing read: the cached split
    os.utime(rgb)  # touched: hashed again, a new fingerprint, embedded: the corrupt image is named
    assert split_main(args) == 2
    assert "sample_000004_rgb.png" in _error(capsys)


def _run(data: str, results: Path, cache: Path, env: dict) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "grid.run", "--space", "smoke", "--arch", "unet", "--data", data,
           "--results", str(results), "--cache-dir", str(cache), "--gpus-per-trial", "0", "--verbose", "0"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return pd.read_csv(results / "smoke" / "leaderboard.csv")


@pytest.mark.slow
def test_a_run_from_s3_gives_the_loose_folders_leaderboard(s3_server: S3Server, s3_pack: str, scenes: Path,
                                                           tmp_path: Path, mobilenet_weights):
    """A fresh Ray per run (a subprocess: its workers inherit the server's address)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    cache = tmp_path / "cache"
    loose = _run(str(scenes), tmp_path / "loose", cache, env)
    shards = [f"/packs/scenes/shard-{i:05d}.tar" for i in range(4)]
    before = [s3_server.gets(s) for s in shards]
    packed = _run(s3_pack, tmp_path / "packed", cache, env)
    assert list(packed.arch) == ["unet"] and list(packed.status) == list(loose.status) == ["finished"]
    assert np.allclose(packed[METRICS].to_numpy(float), loose[METRICS].to_numpy(float), rtol=1e-6)
    fetched = [s3_server.gets(s) - b for s, b in zip(shards, before, strict=True)]
    assert all(n <= 1 for n in fetched) and sum(fetched) >= 1  # at most once on this node, whatever reads
    record = json.loads((tmp_path / "packed" / "smoke" / "experiment.json").read_text())
    assert record["data"]["root"] == s3_pack
    after = [s3_server.gets(s) for s in shards]
    assert check_main(["--data", s3_pack, "--cache-dir", str(cache)]) == 0  # a second reader on this node
    assert [s3_server.gets(s) for s in shards] == [max(a, b + 1) for a, b in zip(after, before, strict=True)]


# ---- bad input ----------------------------------------------------------------------------------

def test_a_uri_that_cannot_be_read_is_one_line(s3_server: S3Server, tmp_path: Path, capsys):
    assert check_main(["--data", "s3://no-such-bucket/pack", "--cache-dir", str(tmp_path)]) == 2
    assert "s3://no-such-bucket/pack/depth-grid-pack.json" in _error(capsys)
    assert check_main(["--data", "s3://packs/not-there", "--cache-dir", str(tmp_path)]) == 2
    assert "not a dataset pack" in _error(capsys)


def test_an_unreachable_endpoint_is_one_line(s3_server: S3Server, scenes: Path, tmp_path: Path, capsys,
                                             monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert check_main(["--data", "s3://packs/scenes", "--cache-dir", str(tmp_path)]) == 2
    assert "s3://packs/scenes" in _error(capsys)
    assert pack_main(["--data", str(scenes), "--out", "s3://packs/elsewhere"]) == 2
    assert "s3://packs/elsewhere" in _error(capsys)


def test_credentials_the_bucket_refuses_are_one_line(scenes: Path, tmp_path: Path, capsys, monkeypatch):
    strict = S3Server(tmp_path, auth=True)  # checks credentials, knows none: ours are refused
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", strict.endpoint)
        for key, value in strict.env().items():
            if key != "AWS_ENDPOINT_URL":
                monkeypatch.setenv(key, value)
        assert check_main(["--data", "s3://packs/scenes", "--cache-dir", str(tmp_path / "c")]) == 2
        err = _error(capsys)
        assert "s3://packs/scenes" in err and "ACCESS_DENIED" in err and "credentials" in err
        assert pack_main(["--data", str(scenes), "--out", "s3://packs/new"]) == 2
        assert "s3://packs/new" in _error(capsys)
        assert not any(m in ("PUT", "POST") for m, _ in strict.requests())
    finally:
        strict.stop()


def _copy_pack(server: S3Server, src: str, dst: str) -> None:
    s3 = server.client()
    for obj in s3.list_objects_v2(Bucket="packs", Prefix=src + "/")["Contents"]:
        s3.copy_object(Bucket="packs", Key=obj["Key"].replace(src, dst, 1),
                       CopySource={"Bucket": "packs", "Key": obj["Key"]})


def test_a_full_cache_disk_is_one_line_before_any_download(scenes: Path, tmp_path: Path, capsys):
    """The real disk and its real free space: a pack (a file:// URI, fetched into the cache as a
    bucket's is) one of whose shards is a sparse file larger than the cache disk's free space.
    Nothing is fetched, and a partial download already there is kept for a later resume."""
    pack = tmp_path / "p"
    assert pack_main(["--data", str(scenes), "--out", str(pack), "--shard-mb", "0.05"]) == 0
    manifest = json.loads((pack / MANIFEST).read_text())
    big = shutil.disk_usage(tmp_path).free + 2**40  # a TiB more than the disk has: no block written
    with open(pack / "shard-00003.tar", "r+b") as fh:
        fh.truncate(big)
    manifest["shards"][3]["bytes"] = big
    manifest["content_hash"] = content_hash(manifest)
    (pack / MANIFEST).write_text(json.dumps(manifest))
    folder = tmp_path / "cache" / "packs" / manifest["content_hash"][:16]
    folder.mkdir(parents=True)
    (folder / ".shard-00001.tar.part").write_bytes(b"x" * 100)  # a download cut short earlier
    assert check_main(["--data", pack.as_uri(), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = _error(capsys)
    needed = sum(s["bytes"] for s in manifest["shards"]) - 100
    assert f"{folder}: cache disk full: the 4 shard(s) of the pack not cached yet need" in err
    assert f"({needed} bytes)" in err and "free there" in err
    assert "--cache-dir" in err and "$DEPTH_GRID_CACHE_DIR" in err
    assert [p.name for p in folder.iterdir()] == [".shard-00001.tar.part"]  # nothing fetched, the part kept
    assert (folder / ".shard-00001.tar.part").read_bytes() == b"x" * 100


def test_a_cache_disk_that_refuses_a_write_mid_download_keeps_the_part(s3_server: S3Server, s3_pack: str,
                                                                         tmp_path: Path):
    """A real refusal from the OS mid-download: the fetching process may write at most 10,000
    bytes a file (``RLIMIT_FSIZE``, ``ulimit -f``: EFBIG, as a full disk's ENOSPC). One line, exit
    2, each shard's part kept; the next fetch resumes them (one more ranged GET each)."""
    import resource
    import signal

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    cache = tmp_path / "cache"
    shards = [f"/packs/scenes/shard-{i:05d}.tar" for i in range(4)]
    before = [s3_server.gets(s) for s in shards]
    done = subprocess.run([sys.executable, "-m", "grid.cli", "check", "--data", s3_pack, "--cache-dir", str(cache)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=limited)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "cache disk full: shard shard-0000" in err, err
    assert "File too large; its part is kept: the next fetch resumes it" in err and "--cache-dir" in err
    parts = sorted(cache.glob("packs/*/.shard-*.tar.part"))
    assert parts and all(p.stat().st_size == 10_000 for p in parts)
    resumed = [s3_server.gets(s) for s in shards]
    assert check_main(["--data", s3_pack, "--cache-dir", str(cache)]) == 0
    assert [s3_server.gets(s) - r for s, r in zip(shards, resumed, strict=True)] == [1, 1, 1, 1]
    assert not list(cache.glob("packs/*/.shard-*.tar.part")) and len(list(cache.glob("packs/*/shard-*.tar"))) == 4
    assert all(r - b <= 1 for r, b in zip(resumed, before, strict=True))


def test_a_manifest_that_does_not_match_its_shards(s3_server: S3Server, s3_pack: str, tmp_path: Path, capsys):
    _copy_pack(s3_server, "scenes", "short")
    s3 = s3_server.client()
    s3.put_object(Bucket="packs", Key="short/shard-00002.tar", Body=b"\0" * 512)
    assert check_main(["--data", "s3://packs/short", "--cache-dir", str(tmp_path)]) == 2
    err = _error(capsys)
    assert "s3://packs/short/shard-00002.tar" in err and "does not match its shards" in err
    _copy_pack(s3_server, "scenes", "edited")
    body = json.loads(s3.get_object(Bucket="packs", Key=f"edited/{MANIFEST}")["Body"].read())
    body["layout"]["depth_scale"] = 1000.0
    s3.put_object(Bucket="packs", Key=f"edited/{MANIFEST}", Body=json.dumps(body).encode())
    assert check_main(["--data", "s3://packs/edited", "--cache-dir", str(tmp_path)]) == 2
    assert "content hash" in _error(capsys)


def test_a_corrupt_shard_in_the_bucket_is_named(s3_server: S3Server, s3_pack: str, tmp_path: Path, capsys):
    _copy_pack(s3_server, "scenes", "rotten")
    s3 = s3_server.client()
    body = bytearray(s3.get_object(Bucket="packs", Key="rotten/shard-00003.tar")["Body"].read())
    body[1000] ^= 0xFF  # the same size: only its hash tells
    s3.put_object(Bucket="packs", Key="rotten/shard-00003.tar", Body=bytes(body))
    before = s3_server.gets("/packs/rotten/shard-00003.tar")
    assert check_main(["--data", "s3://packs/rotten", "--cache-dir", str(tmp_path)]) == 2
    err = _error(capsys)
    assert "s3://packs/rotten/shard-00003.tar: corrupt shard" in err
    assert s3_server.gets("/packs/rotten/shard-00003.tar") == before + 2  # fetched again once, then named


def test_a_pack_used_with_another_layouts_flags(s3_pack: str, tmp_path: Path, capsys):
    assert check_main(["--data", s3_pack, "--cache-dir", str(tmp_path), "--depth-scale", "1000"]) == 2
    assert "packed with --depth-scale 1, not 1000" in _error(capsys)
    assert check_main(["--data", s3_pack, "--cache-dir", str(tmp_path), "--format", "pairs"]) == 2
    assert "packed with --format cil, not pairs" in _error(capsys)
    results = tmp_path / "results"
    assert command("run")(["--space", "smoke", "--data", s3_pack, "--results", str(results), "--crop", "eigen",
                           "--dry-run"]) == 2
    assert "packed with --crop none" in _error(capsys)
    assert not results.exists()
    assert command("run")(["--space", "smoke", "--data", s3_pack, "--results", str(results), "--dry-run"]) == 0
    assert f"pack {s3_pack}" in capsys.readouterr().out
    assert not results.exists()  # opening a pack writes nothing: shards are fetched when read


def test_a_pairs_pack_keeps_its_depth_scale(tmp_path: Path, capsys):
    """A pairs pack records its depth scale; reading it back gives the same metres."""
    data = tmp_path / "pairs"
    (data / "rgb").mkdir(parents=True)
    (data / "depth").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(data / f"rgb/{i}.png")
        Image.fromarray(rng.integers(500, 5000, (24, 32), dtype=np.uint16)).save(data / f"depth/{i}.png")
    (data / "pairs.txt").write_text("".join(f"rgb/{i}.png depth/{i}.png\n" for i in range(3)))
    assert pack_main(["--data", str(data), "--out", str(tmp_path / "p"), "--depth-scale", "1000"]) == 0
    spec = open_pack(tmp_path / "p", tmp_path / "c")
    assert spec.format == "pairs" and spec.depth_scale == 1000.0
    loose = DatasetSpec.detect(data, depth_scale=1000)
    for x, y in zip(index_dataset(loose), index_dataset(spec), strict=True):
        assert np.array_equal(load_pair(x, loose)[1], load_pair(y, spec)[1])
