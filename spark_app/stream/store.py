"""The event store: validated events as Parquet, one folder per micro-batch.

`events/batch_id=<N>/` is written with mode overwrite, so a batch replayed after a crash
replaces its own folder and nothing else: no event is lost or stored twice. Each event carries
`seq`, its position in the order of commits, which defines every training set exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def sequence_bases(base: int, valid_per_partition: Mapping[int, int]) -> dict[int, int]:
    """First `seq` of each Kafka partition's events in a batch: partitions in order, from base."""
    bases: dict[int, int] = {}
    for partition in sorted(valid_per_partition):
        bases[partition] = base
        base += valid_per_partition[partition]
    return bases


def with_sequence(valid: DataFrame, bases: Mapping[int, int]) -> DataFrame:
    """Number the batch's valid events: by Kafka partition, then offset, from each base."""
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
