"""The micro-batch handler: validate, persist exactly once, count, start training runs.

`BatchProcessor.process(batch_df, batch_id)` is what `foreachBatch` calls; a test can call it
with a static DataFrame and a literal batch id. Exactly once comes from three rules:
  1. a batch's events and quarantine are written to folders named by its batch id, with
     mode overwrite, so a replay rewrites the same rows;
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
from pyspark.sql import functions as F

from spark_app import schema as S
from spark_app.stream.ledger import Ledger, TrainingRecord, load_ledger, save_ledger
from spark_app.stream.store import (
    SplitCount,
    read_events,
    sequence_bases,
    split_bases,
    splits_are_ordered_ranges,
    with_sequence,
    with_sequence_in_place,
    write_batch,
)
from spark_app.stream.threshold import (
    events_until_next_run,
    max_wait_due,
    threshold_cuts,
    training_range,
)
from spark_app.stream.validate import Classifier, quarantined, valid_events

log = logging.getLogger(__name__)

# A trainer gets the training set, the run's record and the ledger at that moment, and returns
# (run_id, accepted) — (None, None) if it publishes nothing.
Trainer = Callable[[DataFrame, TrainingRecord, Ledger], tuple[str | None, bool | None]]


@dataclass(frozen=True)
class BatchSettings:
    """Plain values the handler needs (taken from the config by the entrypoint)."""

    max_message_bytes: int
    max_quantity: int
    max_future_seconds: int
    min_timestamp: datetime
    threshold: int
    window_events: int
    max_wait_seconds: float
    events_dir: Path
    quarantine_dir: Path
    state_dir: Path


@dataclass(frozen=True)
class BatchCounts:
    splits: list[SplitCount]  # valid events per Spark partition of the batch
    quarantined: int
    offsets: dict[str, list[int]]  # partition -> [first, last] offset seen in the batch

    @property
    def valid_per_partition(self) -> dict[int, int]:
        per_partition: dict[int, int] = {}
        for s in self.splits:
            per_partition[s.kafka_partition] = per_partition.get(s.kafka_partition, 0) + s.valid
        return per_partition

    @property
    def valid(self) -> int:
        return sum(s.valid for s in self.splits)


def count_batch(classified: DataFrame) -> BatchCounts:
    """Valid events per input split and Kafka partition, quarantined total and offset range:
    one small job. `classified` carries S.INPUT_SPLIT."""
    rows = (
        classified.groupBy(
            S.INPUT_SPLIT, S.KAFKA_PARTITION, F.col(S.REASON).isNull().alias("valid")
        )
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.min(S.KAFKA_OFFSET).alias("first"),
            F.max(S.KAFKA_OFFSET).alias("last"),
        )
        .collect()  # at most 2 rows per Spark partition of the batch
    )
    splits = [
        SplitCount(r[S.INPUT_SPLIT], r[S.KAFKA_PARTITION], r["first"], r["last"], r["n"])
        for r in rows
        if r["valid"]
    ]
    offsets: dict[str, list[int]] = {}
    for r in rows:
        span = offsets.setdefault(str(r[S.KAFKA_PARTITION]), [r["first"], r["last"]])
        span[0], span[1] = min(span[0], r["first"]), max(span[1], r["last"])
    return BatchCounts(splits, sum(r["n"] for r in rows if not r["valid"]), offsets)


def numbered_valid_events(classified: DataFrame, base: int, counts: BatchCounts) -> DataFrame:
    """The batch's valid events with `seq` from `base`, by Kafka partition, then offset.

    As Spark's Kafka source lays a batch out, each split is numbered where it is; any other
    layout (a static DataFrame in a test) takes a window, which shuffles.
    """
    if splits_are_ordered_ranges(counts.splits):
        valid = valid_events(classified, keep=(S.INPUT_SPLIT,))
        return with_sequence_in_place(valid, split_bases(base, counts.splits))
    bases = sequence_bases(base, counts.valid_per_partition)
    return with_sequence(valid_events(classified), bases)


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
    ) -> None:
        self.settings = settings
        self._trainer = trainer
        self._clock = clock
        self._lock = threading.Lock()
        self.ledger = load_ledger(settings.state_dir)
        # The checks' expressions, built once at start (0.1-0.3 s of calls into the JVM) and
        # applied to every batch; building them needs the active SparkSession.
        self._classifier = Classifier(
            max_message_bytes=settings.max_message_bytes,
            max_quantity=settings.max_quantity,
            max_future_seconds=settings.max_future_seconds,
            min_timestamp=settings.min_timestamp,
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
            save_ledger(self.settings.state_dir, ledger)
            self.ledger = ledger
            log.info(
                "batch %d: %d valid, %d quarantined in %.2f s; %d events until the next run",
                batch_id, counts.valid, counts.quarantined, time.monotonic() - started,
                events_until_next_run(ledger.trained_through, ledger.total_valid,
                                      self.settings.threshold),
            )
            self._run_due_trainings(batch_df.sparkSession)

    def _persist(self, batch_df: DataFrame, batch_id: int) -> BatchCounts:
        s = self.settings
        planned = time.monotonic()
        classified = self._classifier(batch_df)
        # Cached once for the count and the two writes; the raw value only where it is needed.
        classified = classified.select(
            *[c for c in classified.columns if c != "value"],
            F.when(F.col(S.REASON).isNotNull(), F.col("value")).alias("value"),
            F.spark_partition_id().alias(S.INPUT_SPLIT),
        ).persist()
        try:
            started = time.monotonic()
            counts = count_batch(classified)
            counted = time.monotonic()
            if counts.valid:
                numbered = numbered_valid_events(classified, self.ledger.total_valid, counts)
                write_batch(numbered, s.events_dir, batch_id)
            if counts.quarantined:
                write_batch(quarantined(classified), s.quarantine_dir, batch_id)
            log.debug("batch %d: plan %.2f s, read+validate+count %.2f s, store %.2f s",
                      batch_id, started - planned, counted - started, time.monotonic() - counted)
            return counts
        finally:
            classified.unpersist()

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
            if self.ledger.pending_training or self._due_cuts(self.ledger):
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
            self._train(spark, self._decide(ledger, ledger.total_valid, "max_wait"))
            return True

    def _due_cuts(self, ledger: Ledger) -> list[int]:
        return threshold_cuts(ledger.trained_through, ledger.total_valid, self.settings.threshold)

    def _run_due_trainings(self, spark: SparkSession) -> None:
        if self.ledger.pending_training:
            self._train(spark, self.ledger)
        for cut in self._due_cuts(self.ledger):
            self._train(spark, self._decide(self.ledger, cut, "threshold"))

    def _decide(self, ledger: Ledger, cut: int, trigger: str) -> Ledger:
        """Record a run as pending, durably, before it starts."""
        first, _ = training_range(cut, self.settings.window_events)
        record = TrainingRecord(sequence=ledger.next_sequence, cut=cut, first_seq=first,
                                trigger=trigger)
        ledger = ledger.with_(pending_training=record)
        save_ledger(self.settings.state_dir, ledger)
        self.ledger = ledger
        return ledger

    def _train(self, spark: SparkSession, ledger: Ledger) -> None:
        record = ledger.pending_training
        assert record is not None
        log.info("training run %d (%s): events [%d, %d) of %d", record.sequence, record.trigger,
                 record.first_seq, record.cut, ledger.total_valid)
        events = read_events(
            spark, self.settings.events_dir, first_seq=record.first_seq, end_seq=record.cut,
            through_batch=ledger.last_batch_id,
        ).select(*S.EVENT_SCHEMA.fieldNames())
        run_id, accepted = self._trainer(events, record, ledger)
        done = replace(record, run_id=run_id, accepted=accepted)
        still_waiting = ledger.total_valid > record.cut
        ledger = ledger.with_(
            pending_training=None,
            trainings=(*ledger.trainings, done),
            trained_through=record.cut,
            waiting_since=self._clock() if still_waiting else None,
        )
        save_ledger(self.settings.state_dir, ledger)
        self.ledger = ledger
