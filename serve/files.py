"""Where the server reads runs from: the one seam between the server and a filesystem.

Everything the server reads of `paths.results` goes through a `ResultsReader` (the `latest`
pointer, a run's JSON and CSV files, its Parquet folders). `open_results` gives the local one;
a reader for HDFS (WebHDFS, or any fsspec filesystem) implements the same four methods and is
chosen there by the location's scheme.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset  # read_parquet needs it: imported at start, not at the first load
import pyarrow.parquet as pq

from serve.errors import ServeConfigError


class ResultsReader(Protocol):
    """Read access to a results folder; paths are relative to it, with `/` separators."""

    location: str

    def read_bytes(self, path: str) -> bytes:
        """The whole file; FileNotFoundError if it is absent."""
        ...

    def exists(self, path: str) -> bool: ...

    def list_names(self, path: str) -> list[str]:
        """Names in a folder (not recursive); [] if it is absent."""
        ...

    def read_parquet(self, path: str) -> pa.Table:
        """A Parquet file or a folder of Parquet parts (names starting with _ or . skipped)."""
        ...


class LocalResults:
    """A results folder on the local filesystem (or a mount)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _path(self, path: str) -> Path:
        return self.root / path

    def read_bytes(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def list_names(self, path: str) -> list[str]:
        folder = self._path(path)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def read_parquet(self, path: str) -> pa.Table:
        return pq.read_table(self._path(path))


def open_results(location: str | Path) -> ResultsReader:
    """The reader for `location` (a local path or a file:// URI)."""
    text = str(location)
    scheme = urlparse(text).scheme
    if scheme in ("", "file"):
        return LocalResults(Path(urlparse(text).path if scheme else text).resolve())
    raise ServeConfigError(
        f"paths.results {text!r}: the API server reads only local paths so far (scheme "
        f"{scheme!r}); mount the results folder and give its local path"
    )
