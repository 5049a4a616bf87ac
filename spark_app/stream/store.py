"""The event store: validated events as Parquet, one folder per micro-batch.

`events/batch_id=<N>/` is written with mode overwrite, so a batch replayed after a crash
replaces its own folder and nothing else: no event is lost or stored twice. Each event carries
`seq`, its position in the order of commits, which defines every training set exactly: within
a batch, events are numbered by Kafka partition, then offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from spark_app import schema as S

STORE_SCHEMA = StructType(
    [*S.EVENT_SCHEMA.fields, StructField(S.SEQ, LongType(), nullable=False)]
)
# As read back: the folder name adds the batch id.
STORED_SCHEMA = StructType([*STORE_SCHEMA.fields, StructField(S.BATCH_ID, LongType())])
# monotonically_increasing_id() puts the Spark partition index above bit 33.
_PARTITION_SHIFT = 33


@dataclass(frozen=True)
class SplitCount:
    """Valid events of one Spark partition (input split) of a batch."""

    split: int
    kafka_partition: int
    first_offset: int
    last_offset: int
    valid: int


def splits_are_ordered_ranges(splits: list[SplitCount]) -> bool:
    """True when every split holds one Kafka partition's contiguous offset range, without overlap
    with another split: how Spark's Kafka source lays a micro-batch out. Then each split's rows
    can be numbered where they are, without a shuffle."""
    by_partition: dict[int, list[tuple[int, int]]] = {}
    seen: set[int] = set()
    for s in splits:
        if s.split in seen:  # one split holding two Kafka partitions
            return False
        seen.add(s.split)
        by_partition.setdefault(s.kafka_partition, []).append((s.first_offset, s.last_offset))
    for ranges in by_partition.values():
        ranges.sort()
        if any(prev[1] >= nxt[0] for prev, nxt in zip(ranges, ranges[1:], strict=False)):
            return False
    return True


def split_bases(base: int, splits: list[SplitCount]) -> dict[int, int]:
    """First `seq` of each split's valid events: splits by Kafka partition and offset, from base."""
    bases: dict[int, int] = {}
    for s in sorted(splits, key=lambda s: (s.kafka_partition, s.first_offset)):
        bases[s.split] = base
        base += s.valid
    return bases


def sequence_bases(base: int, valid_per_partition: Mapping[int, int]) -> dict[int, int]:
    """First `seq` of each Kafka partition's events in a batch: partitions in order, from base."""
    bases: dict[int, int] = {}
    for partition in sorted(valid_per_partition):
        bases[partition] = base
        base += valid_per_partition[partition]
    return bases


def with_sequence_in_place(valid: DataFrame, bases: Mapping[int, int]) -> DataFrame:
    """Number valid rows where they are: base of their split + position in the split by offset.

    `valid` must carry S.INPUT_SPLIT and still be partitioned as it was read (no shuffle since),
    and its splits must satisfy `splits_are_ordered_ranges`. No shuffle, a local sort only.
    """
    base_of = F.create_map(*[F.lit(x) for pair in sorted(bases.items()) for x in pair])
    position = F.monotonically_increasing_id() - (
        F.spark_partition_id().cast("long") * F.lit(1 << _PARTITION_SHIFT)
    )
    return (
        valid.sortWithinPartitions(S.KAFKA_OFFSET)
        .withColumn(S.SEQ, (base_of[F.col(S.INPUT_SPLIT)] + position).cast("long"))
        .drop(S.INPUT_SPLIT)
    )


def with_sequence(valid: DataFrame, bases: Mapping[int, int]) -> DataFrame:
    """Number the batch's valid events: by Kafka partition, then offset, from each base.

    Works on any layout (a window per Kafka partition: a shuffle and a sort).
    """
    if not bases:
        return valid.withColumn(S.SEQ, F.lit(None).cast("long"))
    base_of = F.create_map(*[F.lit(x) for pair in sorted(bases.items()) for x in pair])
    in_partition = Window.partitionBy(S.KAFKA_PARTITION).orderBy(S.KAFKA_OFFSET)
    return valid.withColumn(
        S.SEQ,
        (base_of[F.col(S.KAFKA_PARTITION)] + F.row_number().over(in_partition) - 1).cast("long"),
    )


def batch_path(root: Path, batch_id: int) -> str:
    return str(root / f"{S.BATCH_ID}={batch_id}")


def write_batch(df: DataFrame, root: Path, batch_id: int) -> None:
    """Write (or rewrite, on replay) the folder of one micro-batch."""
    df.write.mode("overwrite").parquet(batch_path(root, batch_id))


def read_events(
    spark: SparkSession, root: Path, *, first_seq: int, end_seq: int, through_batch: int
) -> DataFrame:
    """Stored events with `first_seq <= seq < end_seq` from batches up to `through_batch`."""
    return (
        spark.read.schema(STORED_SCHEMA)
        .option("basePath", str(root))
        .parquet(str(root))
        .where(F.col(S.BATCH_ID) <= through_batch)
        .where((F.col(S.SEQ) >= first_seq) & (F.col(S.SEQ) < end_seq))
    )
