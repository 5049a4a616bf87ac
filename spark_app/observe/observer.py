"""`JobObserver`: what the batch handler and the query's progress report go to, the metrics and
the status file; `OffsetsListener`: the progress report's Kafka offsets, for the lag.

Nothing here may stop the job: a failing observer logs a warning and the batch goes on.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pyspark.sql.streaming import StreamingQueryListener

from recsys_contract.config import AppConfig
from spark_app.observe.counts import kafka_offsets
from spark_app.observe.metrics import JobMetrics
from spark_app.observe.runs import read_latest, read_run
from spark_app.observe.status import StatusPublisher
from spark_app.storage import Storage
from spark_app.stream.ledger import Ledger, TrainingRecord

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., None])


def never_raises(method: F) -> F:
    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - observing must never stop the job
            log.warning("job metrics: %s failed: %s: %s", method.__name__,
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")

    return guarded  # type: ignore[return-value]


class JobObserver:
    """The batch handler's observer (spark_app.stream.batch.BatchObserver) and the lag's."""

    def __init__(self, storage: Storage, results: str, *, topic: str, ledger: Ledger,
                 status: StatusPublisher, metrics: JobMetrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self._storage = storage
        self._results = results
        self._topic = topic
        self._status = status
        self._clock = clock
        self._server: Any = None

    @classmethod
    def start(cls, cfg: AppConfig, storage: Storage, results: str) -> JobObserver:
        """The status file always; the Prometheus endpoint when `metrics.enabled` (a port that
        cannot be bound is logged, and the job runs without it). Call `started` next."""
        status = StatusPublisher(storage, results, topic=cfg.kafka.topic,
                                 threshold=cfg.training.threshold)
        observer = cls(storage, results, topic=cfg.kafka.topic, ledger=Ledger(), status=status)
        if cfg.metrics.enabled:
            observer.metrics = JobMetrics(lambda: observer.ledger, cfg.training.threshold)
            observer.serve(cfg.metrics.host, cfg.metrics.port)
        return observer

    @never_raises
    def started(self, ledger: Ledger) -> None:
        """The job's ledger as it starts: first status file, the runs' figures."""
        self.ledger = ledger
        self._status.update(ledger=ledger)
        self.load_runs()

    def serve(self, host: str, port: int) -> None:
        assert self.metrics is not None
        try:
            self._server = self.metrics.serve(host, port)
        except OSError as exc:
            log.warning("the job's metrics endpoint could not listen on %s:%d (%s): the job "
                        "runs without it; free the port or change metrics.port", host, port,
                        exc.strerror or exc)
            return
        log.info("metrics on http://%s:%d/metrics", host, port)

    @never_raises
    def load_runs(self) -> None:
        """The last finished and the last published runs' figures, from the results."""
        if self.metrics is None:
            return
        latest = read_latest(self._storage, self._results)
        if latest is not None:
            self.metrics.published(latest)
        last = self.ledger.trainings[-1] if self.ledger.trainings else None
        if last is not None and last.run_id and last.accepted is not None:
            figures = read_run(self._storage, self._results, last.run_id, last.accepted)
            if figures is not None:
                self.metrics.run_finished(figures, None)

    # --- BatchObserver ------------------------------------------------------------------------
    @never_raises
    def batch_committed(self, ledger: Ledger, seconds: float) -> None:
        now = self._clock()
        self.ledger = ledger
        self._status.update(ledger=ledger, batch_at=now)
        if self.metrics is not None:
            self.metrics.batch_committed(seconds, now)

    @never_raises
    def training_started(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._status.update(ledger=ledger)
        if self.metrics is not None:
            self.metrics.training.set(1)

    @never_raises
    def training_ended(self, ledger: Ledger, done: TrainingRecord | None,
                       seconds: float) -> None:
        self.ledger = ledger
        self._status.update(ledger=ledger)
        if self.metrics is None:
            return
        self.metrics.training.set(0)
        if done is not None and done.run_id and done.accepted is not None:
            figures = read_run(self._storage, self._results, done.run_id, done.accepted)
            if figures is not None:
                self.metrics.run_finished(figures, seconds)

    # --- the query's progress -----------------------------------------------------------------
    @never_raises
    def progress(self, sources: list[tuple[str | None, str | None]]) -> None:
        """The (endOffset, latestOffset) texts of a progress report's sources."""
        offsets = kafka_offsets(sources)
        if self.metrics is not None:
            self.metrics.offsets(offsets)
        if self._topic in offsets:
            self._status.update(progress=offsets[self._topic])

    def close(self, ledger: Ledger | None = None) -> None:
        """Publish the final status (`stopped`) and stop the endpoint."""
        try:
            self._status.close(ledger or self.ledger)
        finally:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()


class OffsetsListener(StreamingQueryListener):
    """Hands each progress report's Kafka offsets to the observer."""

    def __init__(self, observer: JobObserver) -> None:
        self._observer = observer

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        self._observer.progress([(s.endOffset, s.latestOffset) for s in event.progress.sources])

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass
