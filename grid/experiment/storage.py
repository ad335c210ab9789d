"""Read-only access to an experiment's Tune storage, local or remote (``gs://``, ``s3://``),
through the same pyarrow filesystems Tune writes with."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs


class Storage:
    """Read-only access to Tune's storage, local or remote (``gs://``, ``s3://``), through the
    same pyarrow filesystems Tune writes with."""

    def __init__(self, uri: str) -> None:
        if "://" in uri:
            self.fs, self.root = pafs.FileSystem.from_uri(uri)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), str(Path(uri).resolve())
        self.remote = "://" in uri
        self.prefix = uri.split("://")[0] + "://" if self.remote else ""

    def is_dir(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.Directory

    def is_file(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def listdir(self, path: str) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.Directory)

    def read_text(self, path: str) -> str:
        with self.fs.open_input_stream(path) as fh:
            return fh.read().decode("utf-8", errors="replace")

    def uri(self, path: str) -> str:
        return self.prefix + path if self.remote else path
