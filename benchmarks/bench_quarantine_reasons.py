"""What counting a batch's quarantine by reason costs the batch handler (issue 25).

    flock /tmp/recsys-bench.lock .venv/bin/python benchmarks/bench_quarantine_reasons.py \
        [--records 500000] [--bad-share 0.01] [--splits 4] [--repeat 5]

Stages one micro-batch of --records records (a --bad-share of them bad, over --splits input
splits) as the handler does, then times, --repeat times each, alternated:
  1. `staged_reason_counts`: the driver reads the `reason` column of the batch's staged
     quarantine files through the storage module (pyarrow over the Hadoop stream), and
  2. the alternative it replaces: one Spark job reading the same files and grouping by reason;
and prints both medians. A batch without bad records pays neither (the footers already say it
has none), and the status file and metrics updates run off the batch (a thread of their own).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import functions as F

from infra.java import use_preferred_java
from recsys_contract.events import REASON, Reason
from spark_app import schema as S
from spark_app.session import create_session
from spark_app.storage import Storage, join
from spark_app.stream.store import (
    QUARANTINED,
    stage_batch,
    staged_counts,
    staged_reason_counts,
    staged_rows,
    staging_path,
)
from spark_app.stream.validate import Classifier


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--splits", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    use_preferred_java()
    spark = create_session(app_name="bench-quarantine-reasons", master="local[2]",
                           shuffle_partitions=2, extra_conf={"spark.ui.enabled": "false"})
    every = max(1, round(1 / args.bad_share)) if args.bad_share > 0 else 0
    good = json.dumps({"user_id": "u1", "product_id": "p1", "quantity": 1,
                       "timestamp": "2026-11-27T09:00:00Z"})
    i = F.col("id")
    value = (F.when(i % every == 0, F.when(i % (2 * every) == 0, F.lit("{oops"))
                    .otherwise(F.lit('{"user_id": "u1"}'))).otherwise(F.lit(good))
             if every else F.lit(good))
    batch = spark.range(args.records, numPartitions=args.splits).select(
        value.alias("value"), F.lit("sales").alias("topic"),
        (i % args.splits).cast("int").alias("partition"), i.alias("offset"),
        F.lit(datetime(2026, 11, 27, 10, tzinfo=UTC)).alias("timestamp"))
    classify = Classifier(max_message_bytes=10_000, max_quantity=1000, max_future_seconds=3600,
                          min_timestamp=datetime(2000, 1, 1, tzinfo=UTC), rating_range=(0.0, 5.0))
    storage = Storage(spark)
    with tempfile.TemporaryDirectory(prefix="bench-reasons-") as tmp:
        root = storage.qualify(str(Path(tmp) / "events"))
        stage_batch(staged_rows(classify(batch), 10_000), root, 0)
        _, quarantined = staged_counts(storage, root, 0)
        files = join(staging_path(root, 0), f"{S.STATUS}={QUARANTINED}", f"{S.INPUT_SPLIT}=*")
        driver, spark_job = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            counts = staged_reason_counts(storage, root, 0)
            driver.append(time.perf_counter() - started)
            started = time.perf_counter()
            rows = (spark.read.parquet(files).groupBy(
                F.substring_index(F.col(REASON), ":", 1)).count().collect())
            spark_job.append(time.perf_counter() - started)
        assert sum(counts.values()) == quarantined == sum(r[1] for r in rows), (counts, rows)
    print(f"{args.records} records, {quarantined} quarantined over {args.splits} splits "
          f"({', '.join(f'{Reason.code_of(k)} {v}' for k, v in sorted(counts.items()))})")
    print(f"staged_reason_counts (driver, reason column only): median "
          f"{statistics.median(driver) * 1000:.1f} ms  {[round(t * 1000, 1) for t in driver]}")
    print(f"Spark job (read + group by + collect):             median "
          f"{statistics.median(spark_job) * 1000:.1f} ms  "
          f"{[round(t * 1000, 1) for t in spark_job]}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
