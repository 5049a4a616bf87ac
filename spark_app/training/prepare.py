"""Prepare: events -> one row per (user, product) with stable integer ALS ids.

Integer ids first: the id maps are updated from the events' ids (their distinct ids reduce
map-side to one row per user or product), every event gets its two indices (`attach_indices`,
the maps are small enough to broadcast), and only then are the events aggregated, by the
integer pair (`aggregate_indexed_pairs`; `pairs_by_user` partitions them by user first).
Aggregating by the two string ids first shuffled and cached the strings of every pair, and then
joined every pair to both maps.

The integer ids live in a persisted mapping (Parquet, one per kind: users, products) so that an
id seen in an earlier run keeps its index; new ids get max+1, max+2, ... The mapping is written
as a new version folder and switched by replacing a small pointer file, so a reader (or a crash)
never sees a half-written mapping.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from spark_app.errors import MissingColumnError
from spark_app.schema import (
    EVENT_TIME,
    PRODUCT_ID,
    PRODUCT_IDX,
    PURCHASES,
    QUANTITY,
    RATING,
    USER_ID,
    USER_IDX,
)
from spark_app.storage import Storage, join, name_of

log = logging.getLogger(__name__)

LAST_EVENT_TIME = "last_event_time"  # latest purchase of the pair (used by the `latest` split)
ID_MAP_POINTER = "CURRENT"  # file naming the live version folder of an id map
ID_MAP_VERSION_PREFIX = "v-"
ID_MAP_KEEP_VERSIONS = 2  # the live version and the one before it


def require_columns(df: DataFrame, columns: Iterable[str], where: str) -> None:
    """Raise MissingColumnError naming what `where` needs and did not get."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnError(f"{where} needs columns {missing}; the DataFrame has {df.columns}")


def aggregate_indexed_pairs(events: DataFrame, explicit_ratings: bool = False) -> DataFrame:
    """Events carrying user_idx and product_idx (attach_indices) -> one row per integer pair:
    (user_idx, product_idx, rating, purchases = count, last_event_time).

    `rating` is the sum of the quantities (the confidence of implicit feedback); with
    `explicit_ratings`, the mean of the events' `rating` field where they carry one, else
    the summed quantity (explicit feedback without ratings, as before they existed)."""
    require_columns(
        events, (USER_IDX, PRODUCT_IDX, QUANTITY, EVENT_TIME), "aggregate_indexed_pairs"
    )
    summed = F.sum(QUANTITY).cast("double")
    rated = explicit_ratings and RATING in events.columns
    return events.groupBy(USER_IDX, PRODUCT_IDX).agg(
        (F.coalesce(F.avg(RATING), summed) if rated else summed).alias(RATING),
        F.count(F.lit(1)).alias(PURCHASES),
        F.max(EVENT_TIME).alias(LAST_EVENT_TIME),
    )


def pairs_by_user(events: DataFrame, explicit_ratings: bool = False) -> DataFrame:
    """aggregate_indexed_pairs() of the events hash-partitioned by user_idx first.

    The pairs then stay clustered by user: every per-user step after them (split.side_lists,
    the `latest` split's window) runs without shuffling the pairs again. Aggregating by the
    pair shuffles as much (nearly every event is its own pair, so the map-side aggregation
    saves little) and leaves them spread by (user, product) (measured:
    benchmarks/DECISIONS.md, row `pairs clustered by user`). The trade-off: where the events repeat
    their pairs often (many purchases of the same product by the same user), every event is
    shuffled, where aggregating first would have shuffled one row per pair and task.
    """
    require_columns(events, (USER_IDX,), "pairs_by_user")
    return aggregate_indexed_pairs(events.repartition(USER_IDX), explicit_ratings)


def id_map_schema(id_col: str, idx_col: str) -> StructType:
    """Schema of a persisted id map: raw string id -> integer ALS index."""
    return StructType(
        [StructField(id_col, StringType(), False), StructField(idx_col, IntegerType(), False)]
    )


def missing_ids(current: DataFrame, ids: DataFrame, id_col: str) -> DataFrame:
    """Distinct ids of `ids` that the map `current` does not hold yet."""
    return ids.select(id_col).distinct().join(current.select(id_col), id_col, "left_anti")


def number_ids(new_ids: DataFrame, id_col: str, idx_col: str, start: int) -> DataFrame:
    """Number `new_ids` start, start+1, ... (dense, in partition order), without moving them
    into one partition: one small job counts the rows of each partition (a row per partition),
    then each row's index is its partition's offset plus its position in the partition (the
    low bits of monotonically_increasing_id). Cache `new_ids` first: both passes must see the
    same partitions."""
    partition = F.spark_partition_id()
    sizes = dict(new_ids.groupBy(partition.alias("p")).count().collect())
    offsets, total = [], start
    for p in range(max(sizes, default=-1) + 1):
        offsets.append(total)
        total += sizes.get(p, 0)
    if not offsets:
        return new_ids.select(id_col, F.lit(None).cast(IntegerType()).alias(idx_col))
    position = F.monotonically_increasing_id() - partition.cast("long") * F.lit(1 << 33)
    offset = F.element_at(F.array(*[F.lit(o) for o in offsets]), partition + 1)
    return new_ids.select(id_col, (offset + position).cast(IntegerType()).alias(idx_col))


def _read_pointer(storage: Storage, map_dir: str) -> str | None:
    text = storage.read_text(join(map_dir, ID_MAP_POINTER))
    name = text.strip() if text else ""
    return name if name and storage.is_dir(join(map_dir, name)) else None


def load_id_map(
    spark: SparkSession, map_dir: str | Path, id_col: str, idx_col: str,
    storage: Storage | None = None,
) -> DataFrame:
    """The live version of the id map in `map_dir`, or an empty map if there is none yet."""
    storage = storage or Storage(spark)
    map_dir = storage.qualify(map_dir)
    version = _read_pointer(storage, map_dir)
    if version is None:
        return spark.createDataFrame([], id_map_schema(id_col, idx_col))
    return spark.read.schema(id_map_schema(id_col, idx_col)).parquet(join(map_dir, version))


def save_id_map(id_map: DataFrame, map_dir: str | Path, storage: Storage | None = None) -> str:
    """Write `id_map` as a new version folder and switch the pointer to it atomically."""
    storage = storage or Storage(id_map.sparkSession)
    map_dir = storage.qualify(map_dir)
    storage.mkdirs(map_dir)
    live = _read_pointer(storage, map_dir)
    number = int(live[len(ID_MAP_VERSION_PREFIX) :]) + 1 if live else 1
    name = f"{ID_MAP_VERSION_PREFIX}{number:06d}"
    tmp = join(map_dir, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
    id_map.write.mode("overwrite").parquet(tmp)
    final = join(map_dir, name)
    storage.delete(final)  # left over by a crash between rename and pointer switch
    storage.rename(tmp, final)
    storage.write_atomic(join(map_dir, ID_MAP_POINTER), name + "\n")
    _drop_old_versions(storage, map_dir, keep=name)
    return final


def _drop_old_versions(storage: Storage, map_dir: str, keep: str) -> None:
    entries = storage.list(map_dir)
    versions = [e.name for e in entries if e.is_dir and e.name.startswith(ID_MAP_VERSION_PREFIX)]
    for old in versions[:-ID_MAP_KEEP_VERSIONS]:
        if old != keep:
            storage.delete(join(map_dir, old))
    for stale in entries:
        if stale.name.startswith(".tmp-"):
            storage.delete(stale.path)


def update_id_map(
    spark: SparkSession, ids: DataFrame, map_dir: str | Path, id_col: str, idx_col: str,
    storage: Storage | None = None,
) -> DataFrame:
    """Load the map in `map_dir`, add ids it lacks, persist it if it grew; return the live map.

    Without a map yet (the first run) every distinct id is new: nothing is looked up.
    """
    storage = storage or Storage(spark)
    map_dir = storage.qualify(map_dir)
    if _read_pointer(storage, map_dir) is None:
        current, start = None, 0
        new = ids.select(id_col).distinct().cache()
    else:
        current = load_id_map(spark, map_dir, id_col, idx_col, storage)
        max_idx = current.agg(F.max(idx_col)).first()[0]
        start = 0 if max_idx is None else int(max_idx) + 1
        new = missing_ids(current, ids, id_col).cache()
    try:
        new_count = new.count()
        if new_count == 0:
            log.info("id map %s: no new ids (%d known)", name_of(map_dir), start)
            if current is None:
                return load_id_map(spark, map_dir, id_col, idx_col, storage)
            return current
        numbered = number_ids(new, id_col, idx_col, start)
        extended = (
            numbered if current is None else current.select(id_col, idx_col).unionByName(numbered)
        )
        save_id_map(extended, map_dir, storage)
    finally:
        new.unpersist()
    log.info("id map %s: %d new ids from index %d", name_of(map_dir), new_count, start)
    return load_id_map(spark, map_dir, id_col, idx_col, storage)


def update_id_maps(
    spark: SparkSession, events: DataFrame, maps_dir: str | Path, storage: Storage | None = None
) -> tuple[DataFrame, DataFrame]:
    """update_id_map for users and products of `events` (under maps_dir/users and
    maps_dir/products): the two independent maps' small jobs run side by side."""
    storage = storage or Storage(spark)
    maps_dir = storage.qualify(maps_dir)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="id-map") as pool:
        users = pool.submit(update_id_map, spark, events, join(maps_dir, "users"), USER_ID,
                            USER_IDX, storage)
        products = pool.submit(update_id_map, spark, events, join(maps_dir, "products"),
                               PRODUCT_ID, PRODUCT_IDX, storage)
        return users.result(), products.result()


def attach_indices(rows: DataFrame, user_map: DataFrame, product_map: DataFrame) -> DataFrame:
    """Add user_idx and product_idx to rows with user_id and product_id (events); every id must
    be mapped (update_id_map on the same rows), or its rows are dropped."""
    require_columns(rows, (USER_ID, PRODUCT_ID), "attach_indices")
    return rows.join(user_map.select(USER_ID, USER_IDX), USER_ID).join(
        product_map.select(PRODUCT_ID, PRODUCT_IDX), PRODUCT_ID
    )


@dataclass(frozen=True)
class Prepared:
    """The prepare stage's result: the live id maps (users, products) and the events
    aggregated by integer pair, clustered by user (lazy: the split stage runs and caches it)."""

    maps: tuple[DataFrame, DataFrame]
    pairs: DataFrame


def prepare(spark: SparkSession, events: DataFrame, maps_dir: str | Path,
            storage: Storage | None = None, explicit_ratings: bool = False) -> Prepared:
    """Integer ids first (the maps from the events' ids), then the pairs by integer id
    (aggregate_indexed_pairs says what `explicit_ratings` changes)."""
    user_map, product_map = update_id_maps(spark, events, maps_dir, storage)
    return Prepared((user_map, product_map), pairs_by_user(
        attach_indices(events, user_map, product_map), explicit_ratings))
