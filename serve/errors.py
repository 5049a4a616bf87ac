"""The API server's named errors: one line saying what is wrong and what to do."""

from __future__ import annotations

from recsys_contract.errors import RecsysError, RunFormatError


class ServeConfigError(RecsysError):
    """A setting the server cannot work with (besides what config validation catches)."""


class RunLoadError(RunFormatError):
    """A run cannot be served: rejected, half-written or corrupt. The old run stays."""


class RunRejectedError(RunLoadError):
    """The run's manifest says it lost to its baseline (accepted: false)."""
