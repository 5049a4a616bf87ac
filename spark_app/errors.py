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
