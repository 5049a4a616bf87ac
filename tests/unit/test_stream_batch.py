"""The foreachBatch handler on static DataFrames: counts, replays, cuts, recovery."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from recsys_contract.config import load_config
from spark_app import schema as S
from spark_app.errors import StoreFormatError
from spark_app.stream.batch import BatchProcessor, BatchSettings
from spark_app.stream.ledger import load_ledger
from spark_app.stream.store import SplitCount, read_events, split_bases

KAFKA_TIME = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def settings(tmp_path, threshold=10, window=0, max_wait=0.0, catch_up="exact") -> BatchSettings:
    cfg = load_config(overrides=[f"training.threshold={threshold}",
                                 f"training.window_events={window}",
                                 f"training.max_wait_seconds={float(max_wait)}",
                                 f"training.catch_up={catch_up}"])
    return replace(BatchSettings.from_config(cfg), events_dir=tmp_path / "events",
                   quarantine_dir=tmp_path / "quarantine", state_dir=tmp_path / "state")


def batch(spark, start: int, n: int, partitions: int = 2, bad_every: int = 0):
    """n Kafka records with offsets from `start`, spread over partitions."""
    rows = []
    for i in range(start, start + n):
        event = {"event_id": f"e{i}", "user_id": f"u{i % 7}", "product_id": f"p{i % 5}",
                 "quantity": 1, "timestamp": "2026-11-27T09:00:00Z"}
        value = "not json" if bad_every and i % bad_every == 0 else json.dumps(event)
        rows.append((value, "sales", i % partitions, i // partitions, KAFKA_TIME))
    return spark.createDataFrame(
        rows, "value string, topic string, partition int, offset long, timestamp timestamp"
    )


class Recorder:
    """A trainer that remembers each run's training-set size and event ids."""

    def __init__(self, fail_first: bool = False) -> None:
        self.runs: list[tuple[int, int]] = []
        self.fail_first = fail_first

    def __call__(self, events, record, ledger):
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("killed mid-training")
        self.runs.append((record.sequence, events.count()))
        return f"run-{record.sequence}", True


def test_one_batch_crossing_two_thresholds_starts_two_runs(spark, tmp_path):
    trainer = Recorder()
    processor = BatchProcessor(settings(tmp_path), trainer)
    processor.process(batch(spark, 0, 25), 0)
    assert (trainer.runs, processor.ledger.total_valid - processor.ledger.trained_through) == (
        [(1, 10), (2, 20)], 5)


def test_a_backlog_crossing_three_cuts_trains_once_at_the_latest_when_catching_up(
    spark, tmp_path
):
    trainer = Recorder()
    processor = BatchProcessor(settings(tmp_path, catch_up="latest"), trainer)
    processor.process(batch(spark, 0, 35), 0)
    ledger = load_ledger(tmp_path / "state")
    assert (trainer.runs, [(t.cut, t.skipped_cuts) for t in ledger.trainings],
            ledger.trained_through) == ([(1, 30)], [(30, (10, 20))], 30)


def test_replayed_batch_is_not_counted_or_stored_twice(spark, tmp_path):
    s = settings(tmp_path, threshold=100)
    BatchProcessor(s, Recorder()).process(batch(spark, 0, 8), 0)
    restarted = BatchProcessor(s, Recorder())  # a new process reads the ledger back
    restarted.process(batch(spark, 0, 8), 0)
    restarted.process(batch(spark, 8, 4), 1)
    stored = read_events(spark, s.events_dir, first_seq=0, end_seq=10**9, through_batch=1)
    assert (restarted.ledger.total_valid, stored.select(S.EVENT_ID).distinct().count(),
            stored.count()) == (12, 12, 12)


def test_batch_replayed_after_publishing_replaces_its_first_attempt(spark, tmp_path):
    s = settings(tmp_path, threshold=100)
    BatchProcessor(s, Recorder()).process(batch(spark, 0, 10, bad_every=5), 0)
    (s.state_dir / "ledger.json").unlink()  # killed after publishing, before the ledger
    BatchProcessor(s, Recorder()).process(batch(spark, 0, 10, bad_every=5), 0)
    stored = read_events(spark, s.events_dir, first_seq=0, end_seq=10**9, through_batch=0)
    assert (stored.count(), spark.read.parquet(str(s.quarantine_dir)).count()) == (8, 2)


def test_a_replay_that_finds_no_bad_record_removes_the_first_attempts_quarantine(
    spark, tmp_path
):
    s = settings(tmp_path, threshold=100)
    BatchProcessor(s, Recorder()).process(batch(spark, 0, 10, bad_every=5), 0)
    (s.state_dir / "ledger.json").unlink()  # killed before the ledger; the clock moved on
    BatchProcessor(s, Recorder()).process(batch(spark, 0, 10), 0)
    assert list(s.quarantine_dir.glob("batch_id=0")) == []


def test_a_store_in_the_old_layout_is_refused_with_the_fix(tmp_path):
    s = settings(tmp_path)
    (s.events_dir / "batch_id=0").mkdir(parents=True)
    (s.events_dir / "batch_id=0" / "part-00000.parquet").touch()
    with pytest.raises(StoreFormatError, match=r"move its state folder \(paths.state"):
        BatchProcessor(s, Recorder())


def test_stored_files_hold_micros_and_no_dictionary_for_unique_columns(spark, tmp_path):
    s = settings(tmp_path, threshold=100)
    BatchProcessor(s, Recorder()).process(batch(spark, 0, 10), 0)
    stored = next(s.events_dir.glob("batch_id=0/seq_base=*/*.parquet"))
    group = pq.ParquetFile(stored).metadata.row_group(0)
    by_name = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert (
        str(pq.read_schema(stored).field(S.EVENT_TIME).type),
        [by_name[c].has_dictionary_page for c in (S.EVENT_ID, S.KAFKA_OFFSET, S.KAFKA_TOPIC)],
    ) == ("timestamp[us, tz=UTC]", [False, False, True])


def test_sequence_numbers_are_dense_and_unique(spark, tmp_path):
    s = settings(tmp_path, threshold=100)
    processor = BatchProcessor(s, Recorder())
    processor.process(batch(spark, 0, 9, partitions=3, bad_every=4), 0)
    processor.process(batch(spark, 9, 6, partitions=3), 1)
    stored = read_events(spark, s.events_dir, first_seq=0, end_seq=10**9, through_batch=1)
    seqs = sorted(r[S.SEQ] for r in stored.select(S.SEQ).collect())
    assert seqs == list(range(processor.ledger.total_valid))


def kafka_like_batch(spark, partitions: dict[int, range], bad_offsets: set[int]):
    """A batch laid out as Spark's Kafka source lays it out: one Spark partition per Kafka
    partition, offsets ascending; the Kafka partitions in the dict's order."""
    slices = []
    for partition, offsets in partitions.items():
        rows = []
        for offset in offsets:
            event = {"user_id": f"u{offset % 7}", "product_id": "p1", "quantity": 1,
                     "timestamp": "2026-11-27T09:00:00Z"}
            value = "not json" if offset in bad_offsets else json.dumps(event)
            rows.append((value, "sales", partition, offset, KAFKA_TIME))
        slices.append(rows)
    rdd = spark.sparkContext.parallelize(slices, len(slices)).flatMap(lambda rows: rows)
    return spark.createDataFrame(
        rdd, "value string, topic string, partition int, offset long, timestamp timestamp"
    )


def test_kafka_like_batches_are_numbered_by_partition_then_offset(spark, tmp_path):
    s = settings(tmp_path, threshold=100)
    processor = BatchProcessor(s, Recorder())
    processor.process(kafka_like_batch(spark, {2: range(5, 9), 0: range(10, 13)}, {11}), 0)
    processor.process(kafka_like_batch(spark, {0: range(13, 15), 2: range(9, 10)}, set()), 1)
    stored = read_events(spark, s.events_dir, first_seq=0, end_seq=10**9, through_batch=1)
    numbered = sorted(
        (r[S.SEQ], r[S.KAFKA_PARTITION], r[S.KAFKA_OFFSET])
        for r in stored.select(S.SEQ, S.KAFKA_PARTITION, S.KAFKA_OFFSET).collect()
    )
    assert numbered == [
        (0, 0, 10), (1, 0, 12), (2, 2, 5), (3, 2, 6), (4, 2, 7), (5, 2, 8),
        (6, 0, 13), (7, 0, 14), (8, 2, 9),
    ]


def test_the_ledger_keeps_each_partitions_offsets_bad_records_included(spark, tmp_path):
    processor = BatchProcessor(settings(tmp_path, threshold=100), Recorder())
    processor.process(kafka_like_batch(spark, {2: range(5, 9), 0: range(10, 13)}, {12}), 0)
    processor.process(kafka_like_batch(spark, {0: range(13, 15)}, {14}), 1)
    assert processor.ledger.offsets == {"0": [10, 14], "2": [5, 8]}


@pytest.mark.parametrize(
    ("splits", "bases"),
    [
        ([SplitCount(0, 3, 3, 10, 19, 9), SplitCount(1, 1, 1, 0, 9, 10)], {1: 100, 0: 110}),
        # minPartitions: two splits of one Kafka partition, by first offset
        ([SplitCount(0, 1, 1, 10, 19, 9), SplitCount(1, 1, 1, 0, 9, 10)], {1: 100, 0: 110}),
        # a split of bad records only gets no base
        ([SplitCount(0, 1, 1, 0, 9, 0), SplitCount(1, 2, 2, 0, 9, 4)], {1: 100}),
        ([], {}),
    ],
)
def test_splits_are_numbered_by_partition_then_first_offset(splits, bases):
    assert split_bases(100, splits) == bases


def test_bad_records_are_quarantined_and_counted(spark, tmp_path):
    s = settings(tmp_path, threshold=100)
    processor = BatchProcessor(s, Recorder())
    processor.process(batch(spark, 0, 20, bad_every=5), 0)
    quarantined = spark.read.parquet(str(s.quarantine_dir)).count()
    assert (processor.ledger.total_valid, processor.ledger.total_quarantined, quarantined) == (
        16, 4, 4)


def test_sliding_window_bounds_the_training_set(spark, tmp_path):
    trainer = Recorder()
    processor = BatchProcessor(settings(tmp_path, threshold=10, window=15), trainer)
    processor.process(batch(spark, 0, 30), 0)
    assert trainer.runs == [(1, 10), (2, 15), (3, 15)]


def test_training_interrupted_by_a_crash_runs_again_at_restart(spark, tmp_path):
    s = settings(tmp_path)
    with pytest.raises(RuntimeError):
        BatchProcessor(s, Recorder(fail_first=True)).process(batch(spark, 0, 12), 0)
    trainer = Recorder()
    restarted = BatchProcessor(s, trainer)
    restarted.recover(spark)
    assert (trainer.runs, load_ledger(s.state_dir).pending_training) == ([(1, 10)], None)


def test_max_wait_trains_on_what_is_pending(spark, tmp_path):
    now = [1000.0]
    trainer = Recorder()
    processor = BatchProcessor(settings(tmp_path, threshold=100, max_wait=60), trainer,
                               clock=lambda: now[0])
    processor.process(batch(spark, 0, 7), 0)
    early = processor.check_max_wait(spark)
    now[0] += 61
    late = processor.check_max_wait(spark)
    assert (early, late, trainer.runs) == (False, True, [(1, 7)])
