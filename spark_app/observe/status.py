"""Publishing `results/status.json` (recsys_contract.status) for readers outside the job.

The batch handler only hands the committed ledger over; a thread of its own writes the newest
state, atomically through the storage, coalescing updates that arrive while it writes: the
file costs the micro-batch no I/O. A failed write is logged (once until one succeeds) and
retried at the next update: the status file never stops the job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from recsys_contract.runs import CREATED_AT_FORMAT
from recsys_contract.status import RUNNING, STATUS_FILE, STOPPED, JobStatus
from spark_app.observe.counts import processed_offsets, reason_counts, runs_by_outcome
from spark_app.storage import Storage, join
from spark_app.stream.ledger import Ledger
from spark_app.stream.threshold import events_until_next_run

log = logging.getLogger(__name__)


def utc_text(seconds: float) -> str:
    return time.strftime(CREATED_AT_FORMAT, time.gmtime(seconds))


@dataclass(frozen=True)
class _State:
    ledger: Ledger
    progress: dict[str, tuple[int, int]]  # partition -> (end, latest) of the last progress
    state: str
    last_batch_at: float | None


def status_of(state: _State, *, topic: str, threshold: int, started_at: float,
              now: float) -> JobStatus:
    """The status file's content for the job's state at `now`."""
    ledger = state.ledger
    started, published, rejected = runs_by_outcome(ledger)
    return JobStatus(
        updated_at=utc_text(now), state=state.state, topic=topic,
        processed_offsets=processed_offsets(ledger, state.progress),
        last_batch_id=ledger.last_batch_id, events_stored=ledger.total_valid,
        events_quarantined=ledger.total_quarantined,
        quarantined_by_reason=reason_counts(ledger), threshold=threshold,
        events_until_next_run=events_until_next_run(ledger.trained_through, ledger.total_valid,
                                                    threshold),
        runs_started=started, runs_published=published, runs_rejected=rejected,
        training_run=ledger.pending_training.sequence if ledger.pending_training else None,
        last_batch_at=utc_text(state.last_batch_at) if state.last_batch_at else None,
        started_at=utc_text(started_at),
    )


class StatusPublisher:
    """Keeps the newest state and writes it to `<results>/status.json` from its own thread."""

    def __init__(self, storage: Storage, results: str, *, topic: str, threshold: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = join(results, STATUS_FILE)
        self._storage = storage
        self._topic = topic
        self._threshold = threshold
        self._clock = clock
        self._started_at = clock()
        self._state = _State(Ledger(), {}, RUNNING, None)
        self._changed = threading.Condition()
        self._version = self._written = 0  # nothing to write before the first update
        self._closing = False
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name="status-file", daemon=True)
        self._thread.start()

    def update(self, *, ledger: Ledger | None = None,
               progress: dict[str, tuple[int, int]] | None = None,
               batch_at: float | None = None) -> None:
        """Take a newer ledger, progress offsets or batch time; written soon after."""
        with self._changed:
            state = self._state
            self._state = replace(
                state, ledger=ledger or state.ledger,
                progress={**state.progress, **progress} if progress else state.progress,
                last_batch_at=batch_at or state.last_batch_at)
            self._version += 1
            self._changed.notify()

    def close(self, ledger: Ledger | None = None, timeout: float = 30) -> None:
        """Write the last state as `stopped`, and stop the thread."""
        with self._changed:
            if self._version:  # never over a previous run's file with an empty ledger
                self._state = replace(self._state, ledger=ledger or self._state.ledger,
                                      state=STOPPED)
                self._version += 1
            self._closing = True
            self._changed.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._changed:
                while self._written == self._version and not self._closing:
                    self._changed.wait()
                if self._written == self._version:
                    return
                version, state = self._version, self._state
            self._write(state)
            with self._changed:
                self._written = version

    def _write(self, state: _State) -> None:
        status = status_of(state, topic=self._topic, threshold=self._threshold,
                           started_at=self._started_at, now=self._clock())
        try:
            self._storage.write_atomic(self.path, status.to_json())
        except Exception as exc:  # noqa: BLE001 - Py4J or I/O: the job goes on without it
            if not self._failing:
                log.warning("could not write %s (%s); retrying at the next batch",
                            self.path, str(exc).splitlines()[0] if str(exc) else exc)
            self._failing = True
            return
        if self._failing:
            log.info("%s written again", self.path)
        self._failing = False
