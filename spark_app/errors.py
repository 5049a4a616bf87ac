"""Named errors raised at the job's boundaries (config, inputs, services), and its exit codes.

The base and the errors other parts share live in `recsys_contract.errors`. A RecsysError
that reaches the entrypoint is logged as its one-line message and ends the job with its
`exit_code`: EXIT_START for what is wrong before the job runs (settings, services), the
runtime failures' own codes for what stops it later.
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


EXIT_STOPPED = 0  # stopped by a signal, or --available-now finished
EXIT_FAILED = 1  # a runtime failure that is not an I/O error (the log says which)
EXIT_START = 2  # refused at start: a bad setting, a service that does not answer, no topic
EXIT_IO = 74  # an I/O error on the state or results folders (sysexits.h EX_IOERR)


class TopicMissingError(RecsysError):
    """The Kafka topic to read does not exist (and did not appear within the wait)."""


class SparkMasterUnavailableError(RecsysError):
    """No Spark master answered at the URL the job was given."""


class JobFailedError(RecsysError):
    """The streaming query stopped with an error; the message is its root cause, in one line."""

    exit_code = EXIT_FAILED


class StorageError(JobFailedError):
    """A file operation on paths.state or paths.results failed (read-only, full, not a folder)."""

    exit_code = EXIT_IO


class StorageRefusedError(RecsysError):
    """At start: paths.state or paths.results cannot hold the job's state (exit 2)."""


class UnsupportedStorageError(StorageRefusedError):
    """A path's filesystem is unknown or lacks the atomic rename the commit protocol needs."""


class StorageUnavailableError(StorageRefusedError):
    """A path's filesystem does not answer (e.g. the NameNode is down or the host is wrong)."""


class StoragePermissionError(StorageRefusedError):
    """The job may not write where a path points."""
