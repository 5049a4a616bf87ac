"""The micro-batch handler: validate, persist exactly once, count, start training runs.

`BatchProcessor.process(batch_df, batch_id)` is what `foreachBatch` calls; a test can call it
with a static DataFrame and a literal batch id. Exactly once comes from three rules:
  1. a batch's events and quarantine are written to folders named by its batch id, staged
     then published by renames that replace an earlier attempt's, so a replay rewrites the
     same rows with the same `seq` (spark_app/stream/store.py);
  2. the ledger (counters) is replaced atomically *after* the data, and a batch id at or
     below the ledger's `last_batch_id` is skipped;
  3. a training run is recorded in the ledger as pending *before* it starts, and a pending
     run (or any cut already reached) is run again at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from recsys_contract.config import AppConfig
from recsys_contract.events import QUARANTINE_DIR
from spark_app import schema as S
from spark_app.failpoints import AFTER_PUBLISH, failpoint
from spark_app.storage import Storage, join
from spark_app.stream.ledger import Ledger, TrainingRecord, load_ledger, save_ledger
from spark_app.stream.stop import TrainingAbandoned
from spark_app.stream.store import (
    SplitCount,
    check_store_layout,
    publish_batch,
    read_events,
    split_bases,
    stage_batch,
    staged_counts,
    staged_rows,
)
from spark_app.stream.threshold import (
    CatchUp,
    due_cuts,
    events_until_next_run,
    max_wait_due,
    training_range,
)
from spark_app.stream.validate import Classifier

log = logging.getLogger(__name__)

# A trainer gets the training set, the run's record and the ledger at that moment, and returns
# (run_id, accepted) — (None, None) if it publishes nothing.
Trainer = Callable[[DataFrame, TrainingRecord, Ledger], tuple[str | None, bool | None]]


@dataclass(frozen=True)
class BatchSettings:
    """Plain values the handler needs (taken from the config by the entrypoint)."""

    max_message_bytes: int
    quarantine_max_bytes: int
    max_quantity: int
    max_future_seconds: int
    min_timestamp: datetime
    rating_range: tuple[float, float]  # the optional `rating`: [min_rating, max_rating]
    threshold: int
    window_events: int
    max_wait_seconds: float
    # Folders of the event store, the quarantine and the ledger: URIs of any Hadoop
    # filesystem with atomic rename (spark_app/storage.py), or plain local paths.
    events_dir: str | Path
    quarantine_dir: str | Path
    state_dir: str | Path
    catch_up: CatchUp = "exact"  # a backlog crossing several cuts: a run per cut, or one

    @classmethod
    def from_config(cls, cfg: AppConfig, state: str | None = None,
                    results: str | None = None) -> BatchSettings:
        """The handler's settings from stream.* and training.*; `state` and `results` are
        paths.* as the storage qualified them (default: as configured)."""
        state = state or cfg.paths.state
        results = results or cfg.paths.results
        return cls(
            max_message_bytes=cfg.stream.max_message_bytes,
            quarantine_max_bytes=cfg.stream.quarantine_max_bytes,
            max_quantity=cfg.stream.max_quantity,
            max_future_seconds=cfg.stream.max_future_seconds,
            min_timestamp=datetime.fromisoformat(cfg.stream.min_timestamp),
            rating_range=(cfg.stream.min_rating, cfg.stream.max_rating),
            threshold=cfg.training.threshold,
            window_events=cfg.training.window_events,
            max_wait_seconds=cfg.training.max_wait_seconds,
            events_dir=join(state, "events"),
            quarantine_dir=join(results, QUARANTINE_DIR),
            state_dir=state,
            catch_up=cfg.training.catch_up,
        )


@dataclass(frozen=True)
class BatchCounts:
    splits: list[SplitCount]  # the batch's input splits that held records
    quarantined: int

    @property
    def valid(self) -> int:
        return sum(s.valid for s in self.splits)

    @property
    def offsets(self) -> dict[str, list[int]]:
        """Kafka partition -> [first, last] offset seen in the batch. A split that mixes
        partitions (never one of Spark's Kafka source) does not say which offsets are whose;
        it is left out."""
        offsets: dict[str, list[int]] = {}
        for s in self.splits:
            if s.first_partition == s.last_partition:
                offsets = merge_offsets(
                    offsets, {str(s.first_partition): [s.first_offset, s.last_offset]})
        return offsets


def merge_offsets(
    known: dict[str, list[int]], seen: dict[str, list[int]]
) -> dict[str, list[int]]:
    merged = {p: list(span) for p, span in known.items()}
    for partition, (first, last) in seen.items():
        span = merged.setdefault(partition, [first, last])
        span[0], span[1] = min(span[0], first), max(span[1], last)
    return merged


class BatchProcessor:
    """Holds the ledger between batches; one instance per running query."""

    def __init__(
        self,
        settings: BatchSettings,
        trainer: Trainer,
        clock: Callable[[], float] = time.time,
        storage: Storage | None = None,
    ) -> None:
        self.storage = storage or Storage(SparkSession.active())
        self.settings = replace(
            settings,
            events_dir=self.storage.qualify(settings.events_dir),
            quarantine_dir=self.storage.qualify(settings.quarantine_dir),
            state_dir=self.storage.qualify(settings.state_dir),
        )
        self._trainer = trainer
        self._clock = clock
        self._lock = threading.Lock()
        check_store_layout(self.storage, self.settings.events_dir)
        self.ledger = load_ledger(self.settings.state_dir, self.storage)
        # The checks' expressions, built once at start (0.1-0.3 s of calls into the JVM) and
        # applied to every batch; building them needs the active SparkSession.
        self._classifier = Classifier(
            max_message_bytes=settings.max_message_bytes,
            max_quantity=settings.max_quantity,
            max_future_seconds=settings.max_future_seconds,
            min_timestamp=settings.min_timestamp,
            rating_range=settings.rating_range,
        )

    # --- the foreachBatch handler ---------------------------------------------------------------
    def process(self, batch_df: DataFrame, batch_id: int) -> None:
        with self._lock:
            if batch_id <= self.ledger.last_batch_id:
                log.info("batch %d was committed before a restart; skipping its replay", batch_id)
                return
            started = time.monotonic()
            counts = self._persist(batch_df, batch_id)
            ledger = self._count(self.ledger, counts, batch_id)
            save_ledger(self.storage, self.settings.state_dir, ledger)
            self.ledger = ledger
            log.info(
                "batch %d: %d valid, %d quarantined in %.2f s; %d events until the next run",
                batch_id, counts.valid, counts.quarantined, time.monotonic() - started,
                events_until_next_run(ledger.trained_through, ledger.total_valid,
                                      self.settings.threshold),
            )
            self._run_due_trainings(batch_df.sparkSession)

    def _persist(self, batch_df: DataFrame, batch_id: int) -> BatchCounts:
        """Validate and stage the batch in one pass, then number and publish its splits."""
        s = self.settings
        started = time.monotonic()
        stage_batch(staged_rows(self._classifier(batch_df), s.quarantine_max_bytes),
                    s.events_dir, batch_id)
        staged = time.monotonic()
        counted, quarantined = staged_counts(self.storage, s.events_dir, batch_id)
        publish_batch(self.storage, s.events_dir, s.quarantine_dir, batch_id,
                      split_bases(self.ledger.total_valid, counted))
        log.debug("batch %d: stage %.2f s, count and publish %.2f s",
                  batch_id, staged - started, time.monotonic() - staged)
        return BatchCounts(counted, quarantined)

    def _count(self, ledger: Ledger, counts: BatchCounts, batch_id: int) -> Ledger:
        total = ledger.total_valid + counts.valid
        waiting_since = ledger.waiting_since
        if total > ledger.trained_through and waiting_since is None:
            waiting_since = self._clock()
        return ledger.with_(
            last_batch_id=batch_id,
            total_valid=total,
            total_quarantined=ledger.total_quarantined + counts.quarantined,
            waiting_since=waiting_since,
            offsets=merge_offsets(ledger.offsets, counts.offsets),
        )

    # --- training ---------------------------------------------------------------------------------
    def recover(self, spark: SparkSession) -> None:
        """At start: finish a training run a crash interrupted, and any cut already reached."""
        with self._lock:
            if self.ledger.pending_training or self._due_cuts(self.ledger)[0]:
                log.info("resuming training runs left by the previous process")
            self._run_due_trainings(spark)

    def check_max_wait(self, spark: SparkSession) -> bool:
        """Start a run if `max_wait` has passed with events pending; True if one ran."""
        with self._lock:
            ledger = self.ledger
            if not max_wait_due(ledger.trained_through, ledger.total_valid,
                                ledger.waiting_since, self._clock(),
                                self.settings.max_wait_seconds):
                return False
            log.info("max_wait of %.0f s passed with %d events pending: training now",
                     self.settings.max_wait_seconds,
                     ledger.total_valid - ledger.trained_through)
            return self._train(spark, self._decide(ledger, ledger.total_valid, "max_wait"))

    def _due_cuts(self, ledger: Ledger) -> tuple[list[int], list[int]]:
        s = self.settings
        return due_cuts(ledger.trained_through, ledger.total_valid, s.threshold, s.catch_up)

    def _run_due_trainings(self, spark: SparkSession) -> None:
        if self.ledger.pending_training and not self._train(spark, self.ledger):
            return
        cuts, skipped = self._due_cuts(self.ledger)
        if skipped:
            log.info("catching up: one run at cut %d for the %d cuts reached (%s skipped)",
                     cuts[-1], len(skipped) + 1, ", ".join(map(str, skipped)))
        for cut in cuts:
            if not self._train(spark, self._decide(self.ledger, cut, "threshold", skipped)):
                return

    def _decide(self, ledger: Ledger, cut: int, trigger: str,
                skipped: list[int] | None = None) -> Ledger:
        """Record a run as pending, durably, before it starts."""
        first, _ = training_range(cut, self.settings.window_events)
        record = TrainingRecord(sequence=ledger.next_sequence, cut=cut, first_seq=first,
                                trigger=trigger, skipped_cuts=tuple(skipped or ()))
        ledger = ledger.with_(pending_training=record)
        save_ledger(self.storage, self.settings.state_dir, ledger)
        self.ledger = ledger
        return ledger

    def _train(self, spark: SparkSession, ledger: Ledger) -> bool:
        """Run the pending training run; False if a stop abandoned it (it stays pending)."""
        record = ledger.pending_training
        assert record is not None
        log.info("training run %d (%s): events [%d, %d) of %d", record.sequence, record.trigger,
                 record.first_seq, record.cut, ledger.total_valid)
        events = read_events(
            spark, self.settings.events_dir, first_seq=record.first_seq, end_seq=record.cut,
            through_batch=ledger.last_batch_id,
        ).select(*S.EVENT_SCHEMA.fieldNames())
        try:
            run_id, accepted = self._trainer(events, record, ledger)
        except TrainingAbandoned as abandoned:
            log.info("%s", abandoned)
            return False
        failpoint(AFTER_PUBLISH)
        done = replace(record, run_id=run_id, accepted=accepted)
        still_waiting = ledger.total_valid > record.cut
        ledger = ledger.with_(
            pending_training=None,
            trainings=(*ledger.trainings, done),
            trained_through=record.cut,
            waiting_since=self._clock() if still_waiting else None,
        )
        save_ledger(self.storage, self.settings.state_dir, ledger)
        self.ledger = ledger
        return True
