"""Logging shared by the parts that talk to Kafka with kafka-python (the job's start checks, the
status screen): its connection noise held back while a check decides what to say in one line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """Silence kafka-python inside the block: it logs every refused connection and retry
    (ERROR and WARNING lines) before the caller can say in one line what is wrong."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)
