"""Crash points for the fault tests: `RECSYS_FAILPOINT=<name>` kills the job there.

The job SIGKILLs itself when it reaches the named point, the way a crash or `kill -9` would,
so a test can stop it at a moment no outside observer can hit reliably (e.g. between a run's
rename into runs/ and the ledger save). Unset (always, outside tests), it does nothing.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

ENV = "RECSYS_FAILPOINT"
AFTER_PUBLISH = "after_publish"  # a run is published; the ledger does not record it yet


def failpoint(name: str) -> None:
    """SIGKILL this process (and so its Spark JVM's driver) if `name` is the armed point."""
    if os.environ.get(ENV) == name:
        log.warning("failpoint %s reached: killing the job", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
