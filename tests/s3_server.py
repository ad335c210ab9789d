"""A real S3-protocol server on loopback for the tests: moto's server mode in its own process.

``S3Server`` starts ``moto_server`` on a free port of 127.0.0.1, logging every request to a file,
and points this process's environment (inherited by the commands and Ray workers it starts) at
it: ``AWS_ENDPOINT_URL``, dummy keys, a region. ``bucket()`` creates a bucket with boto3;
``gets(key)`` counts the GET requests the server logged for an object (a shard download is one
ranged GET up to 64 MiB). ``s3_server`` is the pytest fixture (one server per test module).
``S3Server(folder, keys=True)`` also logs each request's access key (``tests/moto_by_key.py``):
a test that gives each node its own key reads per node what was fetched (``gets_by_key``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """``moto_server`` on 127.0.0.1 with its request log in ``log``. ``auth``: the server checks
    credentials (moto's IAM mode: it knows no keys, so every request is denied)."""

    def __init__(self, folder: Path, *, auth: bool = False, keys: bool = False) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = folder / "moto.log"
        self.by_key = folder / "requests-by-key.jsonl"
        moto = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)]
        if keys:
            moto = [sys.executable, str(Path(__file__).with_name("moto_by_key.py")), "127.0.0.1", str(self.port),
                    str(self.by_key)]
        self._fh = open(self.log, "w")  # noqa: SIM115  (closed in stop)
        env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if auth else {})}
        self.proc = subprocess.Popen(moto, stdout=self._fh, stderr=subprocess.STDOUT, env=env)
        self._wait()

    def _wait(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def env(self) -> dict[str, str]:
        return {**ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def bucket(self, name: str) -> str:
        """Create bucket ``name``; returns ``s3://name``."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def requests(self) -> list[tuple[str, str]]:
        """Every logged request as ``(method, path without the query)``."""
        self._fh.flush()
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text())  # werkzeug colours some lines
        found = re.findall(r'"(GET|PUT|POST|HEAD|DELETE) (/[^ ?"]*)', text)
        return [(m, p) for m, p in found]

    def gets(self, key: str) -> int:
        """GET requests of the object ``/bucket/key``."""
        return sum(1 for m, p in self.requests() if m == "GET" and p == key)

    def gets_by_key(self, prefix: str) -> dict[tuple[str, str], int]:
        """GET requests of objects under ``/bucket/prefix``, counted per ``(access key, path)``
        (a server started with ``keys=True``)."""
        counts: dict[tuple[str, str], int] = {}
        for line in self.by_key.read_text().splitlines():
            method, path, key = json.loads(line)
            if method == "GET" and path.startswith(prefix):
                counts[key, path] = counts.get((key, path), 0) + 1
        return counts

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._fh.close()


@pytest.fixture(scope="module", name="s3_server")
def s3_server_fixture(tmp_path_factory) -> Iterator[S3Server]:
    """A moto S3 server for the module, this process's environment pointed at it meanwhile."""
    server = S3Server(tmp_path_factory.mktemp("moto"))
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
