"""Named errors raised at the job's boundaries (config, inputs, services).

The base and the errors other parts share live in `recsys_contract.errors`.
"""

from __future__ import annotations

from recsys_contract.errors import (  # noqa: F401 - re-exported: the job's errors in one place
    BrokerUnavailableError,
    InvalidConfigError,
    RecsysError,
)


class MissingColumnError(RecsysError):
    """A DataFrame lacks columns a function needs."""


class MissingJarError(RecsysError):
    """A JVM jar the job needs is not where set-up puts it."""


class StoreFormatError(RecsysError):
    """The event store on disk was written in a layout this version does not read."""


class StorageError(RecsysError):
    """A file operation on paths.state or paths.results failed."""


class UnsupportedStorageError(StorageError):
    """A path's filesystem is unknown or lacks the atomic rename the commit protocol needs."""


class StorageUnavailableError(StorageError):
    """A path's filesystem does not answer (e.g. the NameNode is down or the host is wrong)."""


class StoragePermissionError(StorageError):
    """The job may not write where a path points."""
