"""Progress while sending: a tqdm bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from tqdm import tqdm

from producer.transport import DeliveryStats

log = logging.getLogger(__name__)

PROGRESS_MODES = ("auto", "bar", "log", "off")


class Progress:
    """Call `update(stats)` often (it is cheap); it draws or logs at most every so often."""

    def __init__(
        self,
        total: int | None,
        mode: str = "auto",
        *,
        stream: TextIO | None = None,
        log_every_s: float = 5.0,
    ) -> None:
        stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if stream.isatty() else "log"
        self.mode = mode
        self._log_every_s = log_every_s
        self._last_log = time.monotonic()
        self._last_bar = 0.0
        self._bar = None
        if mode == "bar":
            self._bar = tqdm(total=total, unit="ev", unit_scale=True, file=stream,
                             dynamic_ncols=True, desc="sent")

    def update(self, stats: DeliveryStats) -> None:
        now = time.monotonic()
        if self._bar is not None:
            if now - self._last_bar >= 0.2:
                self._bar.update(stats.sent - self._bar.n)
                self._bar.set_postfix(acked=f"{stats.acked:,}", failed=f"{stats.failed:,}",
                                      refresh=False)
                self._last_bar = now
        elif self.mode == "log" and now - self._last_log >= self._log_every_s:
            log.info("sent=%d acked=%d failed=%d in_flight=%d rate=%.0f acked/s",
                     stats.sent, stats.acked, stats.failed, stats.in_flight, stats.acked_rate)
            self._last_log = now

    def close(self, stats: DeliveryStats) -> None:
        if self._bar is not None:
            self._bar.update(stats.sent - self._bar.n)
            self._bar.set_postfix(acked=f"{stats.acked:,}", failed=f"{stats.failed:,}")
            self._bar.close()
