"""The send loop: takes record chunks from a source, paces them, hands them to a transport.

Pacing is by slices, not per record: at a target rate (or a replay's due times) the loop
sends every record that is due now in one `send_many` call, then waits for the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from typing import Protocol

from producer.records import RecordChunk
from producer.transport import DeliveryStats

log = logging.getLogger(__name__)

STEP = 1024  # records per send_many call; stop, deadline and progress are checked this often
MAX_WAIT_S = 0.05  # longest single wait, so a stop request is seen quickly


class Transport(Protocol):
    """What the loop needs from a transport (KafkaTransport, StdoutTransport)."""

    stats: DeliveryStats

    def send_many(self, keys: list[bytes | None], values: list[bytes]) -> None: ...


def pump(
    chunks: Iterable[RecordChunk],
    transport: Transport,
    *,
    rate: float = 0.0,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[DeliveryStats], None] | None = None,
    max_unconfirmed: int = 200_000,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Send every record of `chunks`; returns why it ended: "done", "duration" or "stopped".

    `rate` > 0 caps records per second; chunks that carry `due_s` (replay) are sent no
    earlier than their due time. Sending pauses while more than `max_unconfirmed` records
    await their acknowledgement, so memory stays bounded when the broker is slower.
    """
    stop = stop or threading.Event()
    stats = transport.stats
    start = clock()
    paced_sent = 0
    for chunk in chunks:
        n = len(chunk)
        bad_positions = sorted(chunk.bad)
        i = 0
        while i < n:
            if stop.is_set():
                return "stopped"
            now = clock() - start
            if duration_s is not None and now >= duration_s:
                return "duration"
            j = min(n, i + STEP)
            wait = 0.0
            if rate > 0:
                allowed = int(now * rate) + 1 - paced_sent
                if allowed <= 0:
                    wait = (paced_sent / rate) - now
                j = min(j, i + max(allowed, 0))
            elif chunk.due_s is not None:
                j = bisect_right(chunk.due_s, now, i, j)
                if j == i:
                    wait = chunk.due_s[i] - now
            if j == i:
                stop.wait(min(max(wait, 0.001), MAX_WAIT_S))
                continue
            while stats.in_flight > max_unconfirmed and not stop.is_set():
                stop.wait(0.002)
            transport.send_many(chunk.keys[i:j], chunk.values[i:j])
            if bad_positions:
                stats.bad_sent += bisect_left(bad_positions, j) - bisect_left(bad_positions, i)
            paced_sent += j - i
            i = j
            if on_progress is not None:
                on_progress(stats)
    return "done"
