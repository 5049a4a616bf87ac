"""Named errors of the local platform (Kafka broker, Spark cluster): each says what to do."""

from __future__ import annotations


class InfraError(Exception):
    """Base class: a local service could not be set up; the message names the fix."""


class JavaNotFoundError(InfraError):
    """No usable `java` executable was found."""


class JavaVersionError(InfraError):
    """The `java` found is older than the platform needs (17)."""


class MissingJarsError(InfraError):
    """The JVM jars that scripts/setup fetches are not in .deps/."""


class PortInUseError(InfraError):
    """A port the service needs is held by another process."""


class ConfigMismatchError(InfraError):
    """A home folder was set up with other settings (ports, node count) than asked for."""


class ServiceExitedError(InfraError):
    """A service process exited while it was being started."""


class StorageFormatError(InfraError):
    """Formatting a Kafka node's storage failed."""


class StartTimeoutError(InfraError, TimeoutError):
    """A service did not become ready before the deadline."""


class NotStartedError(InfraError):
    """An operation needs a service that has not been set up in this home."""


class SubmitError(InfraError):
    """A spark-submit run failed or timed out."""
