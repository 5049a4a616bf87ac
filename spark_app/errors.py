"""Named errors raised at the job's boundaries (config, inputs, services)."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class: an error whose message says what is wrong and what to do."""


class InvalidConfigError(RecsysError):
    """A configuration file or value is wrong; the message names the key."""


class MissingColumnError(RecsysError):
    """A DataFrame lacks columns a function needs."""


class BrokerUnavailableError(RecsysError):
    """The Kafka broker did not answer within the configured deadline."""


class MissingJarError(RecsysError):
    """A JVM jar the job needs is not where set-up puts it."""


class RunNotFoundError(RecsysError):
    """A results run that was asked for does not exist or is incomplete."""


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
