"""The event store: validated events as Parquet, one folder per micro-batch, written in one pass.

Layout under the store's root (`paths.state`/events):

    batch_id=<N>/seq_base=<B>/part-*.parquet   one folder per input split with valid events
    _staging/batch_id=<N>/                     a batch being written (Spark ignores `_` names)

Each event has `seq`, its position in the order of commits, which defines every training set
exactly. `seq` is not a column of the files: it is `seq_base + split_position`, computed when
the store is read. That lets a batch be validated and written in a single pass over its
records, with nothing cached and nothing counted first:
  1. one Spark job writes every record of the batch, valid or bad, to the batch's staging
     folder, partitioned by status and input split; each valid record carries its position
     among the valid records of its split; the files' footers then say how many there are
     (`staged_counts`: counting them in the same pass, with `observe`, cost 0.2-0.7 s per 1M);
  2. the driver then numbers the splits (`split_bases`) and publishes them with renames: each
     split's folder becomes `batch_id=<N>/seq_base=<B>`, the bad records move to the
     quarantine's `batch_id=<N>/`.
Within a batch, events are numbered split after split (by Kafka partition, then first offset),
in the order the source delivers them; Spark's Kafka source gives each split one partition's
offset range in offset order, so a Kafka batch is numbered by partition, then offset. A batch
replayed after a crash gets the same splits, hence the same numbers, and its publication
replaces whatever an earlier attempt left: no event is lost or stored twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from recsys_contract.events import Reason
from spark_app import schema as S
from spark_app.errors import StorageError, StoreFormatError
from spark_app.storage import Storage, join, name_of, parent_of

# As read back: the file columns of a valid event, then the two folder names.
STORED_SCHEMA = StructType(
    [
        *S.EVENT_SCHEMA.fields,
        StructField(S.SPLIT_POSITION, LongType()),
        StructField(S.BATCH_ID, LongType()),
        StructField(S.SEQ_BASE, LongType()),
    ]
)
STAGING = "_staging"
# Distinct in every row by construction: no Parquet dictionary (see `stage_batch`).
UNIQUE_COLUMNS = (S.EVENT_ID, S.KAFKA_OFFSET, S.SPLIT_POSITION)
VALID, QUARANTINED = "valid", "quarantined"
# monotonically_increasing_id() puts the Spark partition index above bit 33.
_PARTITION_SHIFT = 33


@dataclass(frozen=True)
class SplitCount:
    """One Spark partition (input split) of a batch: its records' Kafka partitions and
    offsets (valid or not), and how many of them are valid."""

    split: int
    first_partition: int
    last_partition: int
    first_offset: int
    last_offset: int
    valid: int


def old_layout(batch_entries: list[str]) -> bool:
    """Whether a batch folder holding these names is in the layout before `seq_base` folders."""
    return any(name.endswith(".parquet") for name in batch_entries)


def check_store_layout(storage: Storage, root: str) -> None:
    """Raise StoreFormatError if `root` holds batches in the layout of versions before
    `seq_base` folders (Parquet files right under `batch_id=<N>/`, `seq` a column)."""
    batches = [e for e in storage.list(root) if e.is_dir and e.name.startswith(f"{S.BATCH_ID}=")]
    if not batches:
        return
    batch = batches[0].path  # every batch has the same layout
    if old_layout([e.name for e in storage.list(batch)]):
        raise StoreFormatError(
            f"the event store {root} was written by an older version of the job ({batch} "
            f"holds Parquet files; batches now hold {S.SEQ_BASE}=<B>/ folders). Stop the "
            "job and move its state folder (paths.state, which holds this store) aside: "
            "the job then starts a new store, reading the topic from "
            "kafka.starting_offsets"
        )


def staged_rows(classified: DataFrame, raw_max_bytes: int) -> DataFrame:
    """Every record of a classified batch as it is staged: the event's fields, the raw value
    and reason of a bad one, the position of a valid one among its split's valid ones, and
    the two folder columns (status, input split).

    A bad record's raw value is kept as bytes, exactly as it came, up to `raw_max_bytes`
    (stream.quarantine_max_bytes), with its whole length and whether it was cut.
    The position comes from a per-task counter that advances only on the rows `when` selects,
    so it must be computed where the rows were read: no shuffle before this.
    """
    valid = F.col(S.REASON).isNull()
    position = F.monotonically_increasing_id() - (
        F.spark_partition_id().cast("long") * F.lit(1 << _PARTITION_SHIFT)
    )
    raw = F.col("value").cast("binary")
    size = F.octet_length(raw).cast("long")
    return classified.select(
        *[F.col(field.name).cast(field.dataType) for field in S.EVENT_SCHEMA.fields],
        F.when(valid, position).alias(S.SPLIT_POSITION),
        F.when(~valid, F.substring(raw, 1, raw_max_bytes)).alias(S.RAW_VALUE),
        F.when(~valid, size).alias(S.RAW_VALUE_BYTES),
        F.when(~valid, F.coalesce(size > raw_max_bytes, F.lit(False)))
        .alias(S.RAW_VALUE_TRUNCATED),
        F.col(S.REASON),
        F.when(valid, F.lit(VALID)).otherwise(F.lit(QUARANTINED)).alias(S.STATUS),
        F.spark_partition_id().alias(S.INPUT_SPLIT),
    )


def staged_counts(storage: Storage, root: str, batch_id: int) -> tuple[list[SplitCount], int]:
    """(the splits that held records, quarantined records) of a staged batch, read from its
    Parquet files' footers: row counts, and the min/max statistics of the Kafka partition and
    offset columns. Nothing is read from the rows themselves."""
    staged = staging_path(root, batch_id)
    files = storage.glob(join(staged, f"{S.STATUS}=*", f"{S.INPUT_SPLIT}=*", "*.parquet"))
    columns = (S.KAFKA_PARTITION, S.KAFKA_OFFSET)
    try:
        footers = storage.parquet_stats(files, columns)
    except StorageError as exc:
        raise StoreFormatError(str(exc)) from None
    splits: dict[int, SplitCount] = {}
    quarantined = 0
    for file, footer in zip(files, footers, strict=True):
        if not footer.rows:
            continue
        split = int(name_of(parent_of(file)).split("=", 1)[1])
        status = name_of(parent_of(parent_of(file))).split("=", 1)[1]
        valid = footer.rows if status == VALID else 0
        quarantined += footer.rows - valid
        partitions, offsets = (footer.mins[c] + footer.maxs[c] for c in columns)
        found = SplitCount(split, min(partitions), max(partitions), min(offsets),
                           max(offsets), valid)
        known = splits.get(split)
        splits[split] = found if known is None else _merged(known, found)
    return [splits[k] for k in sorted(splits)], quarantined


def staged_reason_counts(storage: Storage, root: str, batch_id: int) -> dict[str, int]:
    """Quarantined records of a staged batch by reason code (`Reason.code_of`), read in the
    driver from the `reason` column of its quarantine files alone (a few byte ranges per
    file, through the storage): no Spark job. For a batch that has quarantined records."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pattern = join(staging_path(root, batch_id), f"{S.STATUS}={QUARANTINED}",
                   f"{S.INPUT_SPLIT}=*", "*.parquet")
    counts: Counter[str] = Counter()
    for file in storage.glob(pattern):
        with storage.open_input(file) as handle:
            reasons = pq.ParquetFile(handle).read(columns=[S.REASON]).column(0)
        for item in pc.value_counts(reasons).to_pylist():
            counts[Reason.code_of(item["values"] or "")] += item["counts"]
    return dict(counts)


def _merged(a: SplitCount, b: SplitCount) -> SplitCount:
    return SplitCount(a.split, min(a.first_partition, b.first_partition),
                      max(a.last_partition, b.last_partition),
                      min(a.first_offset, b.first_offset), max(a.last_offset, b.last_offset),
                      a.valid + b.valid)


def split_bases(base: int, splits: list[SplitCount]) -> dict[int, int]:
    """`seq` of each split's first valid event: splits with valid events by Kafka partition,
    then first offset (then split index), numbered on from `base`."""
    bases: dict[int, int] = {}
    for s in sorted(splits, key=lambda s: (s.first_partition, s.first_offset, s.split)):
        if s.valid:
            bases[s.split] = base
            base += s.valid
    return bases


def batch_path(root: str, batch_id: int) -> str:
    return join(root, f"{S.BATCH_ID}={batch_id}")


def staging_path(root: str, batch_id: int) -> str:
    return batch_path(join(root, STAGING), batch_id)


def stage_batch(rows: DataFrame, root: str, batch_id: int) -> None:
    """Write (or rewrite, on replay) a batch's `staged_rows` to its staging folder.

    Columns whose every value is distinct get no dictionary: Parquet would build one, find it
    too large and write the column plain anyway; skipping that is cheaper
    (benchmarks/DECISIONS.md, row `Parquet dictionary off on unique columns`).
    """
    writer = rows.write.mode("overwrite")
    for column in UNIQUE_COLUMNS:
        writer = writer.option(f"parquet.enable.dictionary#{column}", "false")
    writer.partitionBy(S.STATUS, S.INPUT_SPLIT).parquet(staging_path(root, batch_id))


def publish_batch(storage: Storage, root: str, quarantine_root: str, batch_id: int,
                  bases: Mapping[int, int]) -> None:
    """Move a staged batch into the store and the quarantine, replacing an earlier attempt's.

    Renames only: each valid split's folder becomes `seq_base=<B>` of the batch's folder,
    which then takes the place of the old one; the bad records' files gather in a hidden
    folder of the quarantine that then takes its place.
    A crash in between leaves the batch uncommitted in the ledger; its replay publishes again.
    """
    staged = staging_path(root, batch_id)
    ready = join(staged, "publish")
    storage.delete(ready)
    storage.mkdirs(ready)
    for split, base in bases.items():
        storage.rename(join(staged, f"{S.STATUS}={VALID}", f"{S.INPUT_SPLIT}={split}"),
                       join(ready, f"{S.SEQ_BASE}={base}"))
    bad = storage.glob(join(staged, f"{S.STATUS}={QUARANTINED}", f"{S.INPUT_SPLIT}=*", "*"))
    if bad:
        gathered = join(quarantine_root, f".{S.BATCH_ID}={batch_id}.incoming")
        storage.delete(gathered)
        storage.mkdirs(gathered)
        for file in bad:
            storage.rename(file, join(gathered, name_of(file)))
        _replace_folder(storage, gathered, batch_path(quarantine_root, batch_id))
    else:  # an earlier attempt may have judged differently: "in the future" is relative
        _replace_folder(storage, None, batch_path(quarantine_root, batch_id))
    _replace_folder(storage, ready if bases else None, batch_path(root, batch_id))
    storage.delete(staged)


def _replace_folder(storage: Storage, source: str | None, target: str) -> None:
    """Remove `target` if it exists, then rename `source` (if any) to it."""
    storage.delete(target)
    if source is not None:
        storage.mkdirs(parent_of(target))
        storage.rename(source, target)


def read_events(
    spark: SparkSession, root: str | Path, *, first_seq: int, end_seq: int, through_batch: int
) -> DataFrame:
    """Stored events with `first_seq <= seq < end_seq` from batches up to `through_batch`:
    the event's fields, `seq` and `batch_id`."""
    seq = F.col(S.SEQ_BASE) + F.col(S.SPLIT_POSITION)
    return (
        spark.read.schema(STORED_SCHEMA)
        .option("basePath", str(root))
        .parquet(str(root))
        .where((F.col(S.BATCH_ID) <= through_batch) & (F.col(S.SEQ_BASE) < end_seq))
        .select(*S.EVENT_SCHEMA.fieldNames(), seq.alias(S.SEQ), S.BATCH_ID)
        .where((F.col(S.SEQ) >= first_seq) & (F.col(S.SEQ) < end_seq))
    )
