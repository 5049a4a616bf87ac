"""Seeded synthetic sales events in the stored events' schema: what the job's training warm-up
(spark_app/stream/warmup.py) trains on, and what benchmarks/bench_training.py measures with."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_app.schema import EVENT_SCHEMA


def synthetic_events(spark: SparkSession, n_events: int, n_users: int, n_products: int,
                     segments: int, seed: int) -> DataFrame:
    """Seeded events in EVENT_SCHEMA: users buy mostly (85%) inside their taste segment
    (uniformly there), the rest from a catalog-wide head of popular products."""
    per_segment = max(1, n_products // segments)
    ids = spark.range(n_events, numPartitions=max(2, spark.sparkContext.defaultParallelism * 2))
    # Draw each random number once (two rand(seed) calls are not guaranteed equal per row).
    drawn = ids.select(
        "id",
        (F.rand(seed) * n_users).cast("long").alias("u"),
        F.rand(seed + 1).alias("r_own"),
        F.rand(seed + 2).alias("r_any"),
        F.rand(seed + 3).alias("r_pick"),
        (1 + (F.rand(seed + 4) * 3).cast("int")).alias("quantity"),
    )
    own = F.col("u") % segments + segments * (F.col("r_own") * per_segment).cast("long")
    anywhere = (F.pow(F.col("r_any"), 2) * n_products).cast("long")
    product = F.when(F.col("r_pick") < 0.85, own).otherwise(anywhere) % n_products
    df = drawn.select(
        F.concat(F.lit("e-"), F.col("id").cast("string")).alias("event_id"),
        F.concat(F.lit("u"), F.col("u").cast("string")).alias("user_id"),
        F.concat(F.lit("p"), product.cast("string")).alias("product_id"),
        "quantity",
        F.timestamp_seconds(F.lit(1_790_000_000) + F.col("id")).alias("event_time"),
        F.lit(9.5).alias("price"),
        F.lit("sales").alias("kafka_topic"),
        (F.col("id") % 3).cast("int").alias("kafka_partition"),
        (F.col("id") / 3).cast("long").alias("kafka_offset"),
    )
    return df.select(*[(F.col(f.name) if f.name in df.columns else F.lit(None))
                       .cast(f.dataType).alias(f.name) for f in EVENT_SCHEMA.fields])
