"""The job's one seam to its files: Hadoop's FileSystem API, through the Spark session's JVM.

Every read, write, rename and delete on `paths.state` and `paths.results` goes through
`Storage`, so a local folder, `file:///...` or `hdfs://namenode:port/...` is a URI, not a code
path; Spark itself reads and writes the Parquet and CSV files at the same URIs. No second HDFS
client: the JVM Spark already has (its Hadoop client jars and configuration) does the work.

Paths are strings: qualified URIs (`file:/abs/path`, `hdfs://host:port/path`) once `qualify`
has seen them; a plain path means the local filesystem, resolved against the working folder.

The commit protocol needs a rename that is atomic, so only filesystems that have one are
accepted (`ATOMIC_RENAME_SCHEMES`): HDFS (a NameNode operation) and the local disk (POSIX
rename). Object stores (s3a, gs, abfs/wasb, oss, ...) emulate rename by copy-and-delete, which
a crash can leave half done: they are refused at start (`check_root`) with what to use instead.
On the local disk the raw filesystem is used, so no `.crc` checksum files appear beside ours.

Replacing a small file atomically (the ledger, `latest`, the id maps' pointers) writes a
temporary sibling and renames it over the target: on HDFS with `rename(src, dst, OVERWRITE)`
(the NameNode's rename2, atomic), on the local disk with rename(2), atomic too.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from spark_app.errors import (
    StorageError,
    StoragePermissionError,
    StorageUnavailableError,
    UnsupportedStorageError,
)

log = logging.getLogger(__name__)

# Schemes whose rename is atomic (files and folders): the job's commit protocol relies on it.
ATOMIC_RENAME_SCHEMES = frozenset({"file", "hdfs"})
# Object stores and other filesystems known to rename by copy-and-delete (not atomically).
NON_ATOMIC_SCHEMES = frozenset(
    {"s3", "s3a", "s3n", "gs", "abfs", "abfss", "wasb", "wasbs", "oss", "cos", "cosn", "obs",
     "ks3", "adl", "swift"}
)
# Footers read side by side: each is a round trip to the NameNode and a DataNode.
FOOTER_THREADS = 8


@dataclass(frozen=True)
class Entry:
    """One item of a folder listing."""

    name: str
    path: str
    is_dir: bool
    size: int


@dataclass(frozen=True)
class ColumnStats:
    """Row count of one Parquet file and the min/max of some of its columns over its row
    groups (groups without rows left out)."""

    rows: int
    mins: dict[str, list[int]]
    maxs: dict[str, list[int]]


def join(base: str, *parts: str) -> str:
    """`base/part/...` for URIs and plain paths alike."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


def name_of(path: str) -> str:
    """The last component of a path or URI."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def parent_of(path: str) -> str:
    """The folder holding `path`."""
    return path.rstrip("/").rsplit("/", 1)[0]


def scheme_of(path: str | Path) -> str:
    """`hdfs`, `file`, ...; "" for a plain path."""
    text = str(path)
    head, sep, _ = text.partition("://")
    if sep and head.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return head.lower()
    if text.startswith("file:"):
        return "file"
    return ""


def _java_error(exc: BaseException) -> tuple[str, str]:
    """(Java class name, first message line) of a Py4JJavaError; ("", str) otherwise."""
    # Py4J's error, or pyspark's conversion of it (which keeps the Java one as `_origin`).
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java is None:
        return "", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        cause = java
        while cause.getCause() is not None and cause.getCause() != cause:
            if "ConnectException" in cause.getClass().getName():
                break
            cause = cause.getCause()
        message = cause.getMessage() or java.getMessage() or ""
        return cause.getClass().getName(), str(message).splitlines()[0] if message else ""
    except Exception:  # noqa: BLE001 - the gateway may be gone; say what we can
        return "", str(exc).splitlines()[0]


class Storage:
    """Filesystem operations on URIs, through the JVM's Hadoop FileSystem API."""

    def __init__(self, spark: SparkSession) -> None:
        self._spark = spark
        self._jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
        self._gateway = spark.sparkContext._gateway  # type: ignore[attr-defined]
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
        self._filesystems: dict[str, Any] = {}
        self._lock = threading.Lock()

    # ---- plumbing -------------------------------------------------------------------------

    def _path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(str(path))

    def _fs(self, path: str) -> Any:
        """The FileSystem of `path` (cached per scheme and authority); the raw one locally."""
        jpath = self._path(path)
        uri = jpath.toUri()
        key = f"{uri.getScheme()}://{uri.getAuthority()}"
        with self._lock:
            fs = self._filesystems.get(key)
            if fs is None:
                fs = jpath.getFileSystem(self._conf)
                if str(fs.getUri().getScheme()) == "file":
                    fs = self._jvm.org.apache.hadoop.fs.FileSystem.getLocal(
                        self._conf).getRawFileSystem()
                self._filesystems[key] = fs
        return fs

    def qualify(self, path: str | Path) -> str:
        """The absolute URI of `path` (a plain path: on the local disk, from the working
        folder)."""
        text = str(path)
        if not scheme_of(text):
            text = Path(text).absolute().as_uri()
        jpath = self._path(text)
        return str(jpath.getFileSystem(self._conf).makeQualified(jpath).toString())

    # ---- start-up check -------------------------------------------------------------------

    def check_root(self, path: str | Path, setting: str) -> str:
        """Qualify `path`, refuse a filesystem without atomic rename, and prove the job can
        create and delete a file there. Returns the qualified URI; else a named error whose
        one-line message names `setting` and the fix."""
        scheme = scheme_of(path) or "file"
        if scheme in NON_ATOMIC_SCHEMES:
            raise UnsupportedStorageError(
                f"{setting}={path}: {scheme}:// has no atomic rename, which the job's commit "
                "protocol (event store, runs, ledger) needs; put paths.state and paths.results "
                "on HDFS (hdfs://namenode:port/...) or a local/shared disk, and copy runs to "
                "the object store from there if analysts read them there"
            )
        try:
            root = self.qualify(path)
        except Exception as exc:  # noqa: BLE001 - Py4JJavaError; classified below
            kind, message = _java_error(exc)
            if kind.endswith("UnsupportedFileSystemException") or "No FileSystem" in message:
                raise UnsupportedStorageError(
                    f"{setting}={path}: no Hadoop filesystem for scheme {scheme!r} ({message}); "
                    f"use a plain path, file:///... or hdfs://namenode:port/..."
                ) from None
            raise StorageUnavailableError(f"{setting}={path}: {kind or 'error'}: {message}") \
                from None
        real = scheme_of(root)
        if real not in ATOMIC_RENAME_SCHEMES:
            raise UnsupportedStorageError(
                f"{setting}={path}: the {real}:// filesystem is not known to rename atomically, "
                "which the job's commit protocol needs; supported: a plain path, file:///..., "
                "hdfs://namenode:port/..."
            )
        probe = join(root, f".write-check-{uuid.uuid4().hex[:8]}")
        try:
            self.mkdirs(root)
            self.write_bytes(probe, b"")
            self.delete(probe)
        except Exception as exc:  # noqa: BLE001 - Py4JJavaError; classified below
            kind, message = _java_error(exc)
            if kind.endswith("AccessControlException") or "Permission denied" in message:
                raise StoragePermissionError(
                    f"{setting}={path}: no permission to write there ({message}); "
                    "give the job's user write access or choose another folder"
                ) from None
            if "ConnectException" in kind or "Connection refused" in message or \
                    "UnknownHost" in kind:
                raise StorageUnavailableError(
                    f"{setting}={path}: the NameNode does not answer ({message}); start HDFS "
                    "or fix the host:port of the URI"
                ) from None
            raise StorageUnavailableError(f"{setting}={path}: {kind or 'error'}: {message}") \
                from None
        return root

    # ---- queries --------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return bool(self._fs(path).exists(self._path(path)))

    def is_dir(self, path: str) -> bool:
        fs, jpath = self._fs(path), self._path(path)
        return bool(fs.exists(jpath) and fs.getFileStatus(jpath).isDirectory())

    def is_file(self, path: str) -> bool:
        fs, jpath = self._fs(path), self._path(path)
        return bool(fs.exists(jpath) and fs.getFileStatus(jpath).isFile())

    def symlink_target(self, path: str) -> str | None:
        """Where a symbolic link points (local disk; HDFS has none for clients), else None."""
        fs, jpath = self._fs(path), self._path(path)
        if not fs.supportsSymlinks():
            return None
        try:
            status = fs.getFileLinkStatus(jpath)
        except Exception:  # noqa: BLE001 - FileNotFoundException through Py4J
            return None
        return str(status.getSymlink().toString()) if status.isSymlink() else None

    def is_symlink(self, path: str) -> bool:
        return self.symlink_target(path) is not None

    def list(self, path: str) -> list[Entry]:
        """The entries of folder `path`, sorted by name; [] if it does not exist."""
        fs, jpath = self._fs(path), self._path(path)
        if not fs.exists(jpath):
            return []
        entries = [
            Entry(str(s.getPath().getName()), join(path, str(s.getPath().getName())),
                  bool(s.isDirectory()), int(s.getLen()))
            for s in fs.listStatus(jpath)
        ]
        return sorted(entries, key=lambda e: e.name)

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a Hadoop glob (`*`, `?`, `[...]`, `{a,b}`), sorted."""
        found = self._fs(pattern).globStatus(self._path(pattern))
        return sorted(str(s.getPath().toString()) for s in (found or []))

    # ---- changes --------------------------------------------------------------------------

    def mkdirs(self, path: str) -> None:
        """Create `path` and its parents (nothing if it exists)."""
        if not self._fs(path).mkdirs(self._path(path)):
            raise StorageError(f"could not create the folder {path}")

    def delete(self, path: str, recursive: bool = True) -> bool:
        """Remove a file or a folder tree; False if there was nothing."""
        return bool(self._fs(path).delete(self._path(path), recursive))

    def rename(self, source: str, target: str) -> None:
        """Move `source` to `target`, which must not exist (a folder there would receive
        `source` inside it); atomic on the filesystems `check_root` accepts."""
        if not self._fs(source).rename(self._path(source), self._path(target)):
            raise StorageError(
                f"could not rename {source} to {target} (missing source, existing target, or "
                "missing parent folder)"
            )

    def replace_file(self, source: str, target: str) -> None:
        """Rename file `source` over file `target` atomically: a reader sees the old or the
        new file, never none."""
        fs = self._fs(target)
        if str(fs.getUri().getScheme()) == "hdfs":
            options = self._gateway.new_array(self._jvm.org.apache.hadoop.fs.Options.Rename, 1)
            options[0] = self._jvm.org.apache.hadoop.fs.Options.Rename.OVERWRITE
            fs.rename(self._path(source), self._path(target), options)
        else:  # the raw local filesystem: rename(2) replaces a file atomically
            self.rename(source, target)

    def write_bytes(self, path: str, data: bytes, *, sync: bool = False) -> None:
        """Create (or overwrite) `path` with `data`; not atomic (see write_atomic). `sync`:
        on the disks (fsync) before returning, not only handed to the filesystem."""
        out = self._fs(path).create(self._path(path), True)
        try:
            if data:
                out.write(bytearray(data))
            if sync:
                out.hsync()
        finally:
            out.close()

    def write_atomic(self, path: str, data: bytes | str) -> None:
        """Write `path` so that a reader sees the old or the new content, never a mix."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        tmp = join(parent_of(path), f".{name_of(path)}.{uuid.uuid4().hex[:8]}.tmp")
        self.write_bytes(tmp, raw, sync=True)
        try:
            self.replace_file(tmp, path)
        except BaseException:
            self.delete(tmp, recursive=False)
            raise

    def read_bytes(self, path: str) -> bytes:
        stream = self._fs(path).open(self._path(path))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def read_text(self, path: str) -> str | None:
        """The file's text, or None if it does not exist."""
        if not self.is_file(path):
            return None
        return self.read_bytes(path).decode("utf-8")

    def concat(self, header: bytes, parts: Sequence[str], target: str) -> None:
        """Write `header` then every part's bytes, in order, to `target`, through a temporary
        sibling renamed into place (the copy runs inside the JVM)."""
        tmp = join(parent_of(target), f".{name_of(target)}.{uuid.uuid4().hex[:8]}")
        fs = self._fs(target)
        out = fs.create(self._path(tmp), True)
        utils = self._jvm.org.apache.hadoop.io.IOUtils
        try:
            out.write(bytearray(header))
            for part in parts:
                stream = self._fs(part).open(self._path(part))
                utils.copyBytes(stream, out, 1 << 20, False)
                stream.close()
        finally:
            out.close()
        self.rename(tmp, target)

    # ---- Parquet footers ------------------------------------------------------------------

    def parquet_stats(self, paths: Iterable[str], columns: Sequence[str]) -> list[ColumnStats]:
        """Row count and min/max of `columns` of each Parquet file, from its footer only."""
        paths = list(paths)
        if not paths:
            return []
        workers = min(FOOTER_THREADS, len(paths))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="footer") as pool:
            return list(pool.map(lambda p: self._footer(p, columns), paths))

    def _footer(self, path: str, columns: Sequence[str]) -> ColumnStats:
        jvm = self._jvm
        source = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(
            self._path(path), self._conf)
        stream = source.newStream()
        try:
            meta = jvm.org.apache.parquet.hadoop.ParquetFileReader.readFooter(
                source, jvm.org.apache.parquet.ParquetReadOptions.builder().build(), stream)
        finally:
            stream.close()
        mins: dict[str, list[int]] = {c: [] for c in columns}
        maxs: dict[str, list[int]] = {c: [] for c in columns}
        rows = 0
        for block in meta.getBlocks():
            count = int(block.getRowCount())
            if not count:
                continue
            rows += count
            found = {str(c.getPath().toDotString()): c for c in block.getColumns()}
            for name in columns:
                stats = found[name].getStatistics() if name in found else None
                if stats is None or not stats.hasNonNullValue() or stats.isEmpty():
                    raise StorageError(
                        f"{path} has no min/max statistics for {name}: the job needs Parquet's "
                        "column statistics (parquet.statistics.enabled must not be false)"
                    )
                mins[name].append(int(stats.genericGetMin()))
                maxs[name].append(int(stats.genericGetMax()))
        return ColumnStats(rows, mins, maxs)
