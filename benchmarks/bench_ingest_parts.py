"""Where the ingest time goes: each part of Kafka -> validated -> persisted, alone, on one topic.

    .venv/bin/python benchmarks/bench_ingest_parts.py [--events 1000000] [--repeat 3]

Not a test. Pre-produces the events (as bench_ingest.py does), then times static (batch) reads
of the whole topic in one Spark session, each step best of --repeat after one warm-up pass:
  1. Spark's Kafka source alone (noop sink), with Kafka's default consumer options and with
     the job's (conf/defaults.yaml kafka.consumer_options);
  2. the same plus `classify` (JSON parse and every check), noop sink;
  3. the same plus writing the valid events to Parquet in the same pass, with Parquet's
     defaults (no count, no `seq`, no quarantine): what the job's one pass is held against;
  4. the job's batch handler (BatchProcessor.process: one pass writes valid and bad records
     with their split positions and counts them; then renames and the ledger).
Prints seconds and events/s of each, so that the bound on the whole job can be read off.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.bench_ingest import produce
from infra.java import use_preferred_java
from infra.kafka_local import LocalKafka
from recsys_contract.config import load_config
from spark_app import schema as S
from spark_app.session import create_session
from spark_app.stream.batch import BatchProcessor, BatchSettings
from spark_app.stream.store import VALID, staged_rows
from spark_app.stream.validate import classify

log = logging.getLogger("bench_ingest_parts")
LIMITS = {
    "max_message_bytes": 10_000,
    "max_quantity": 1000,
    "max_future_seconds": 3600,
    "min_timestamp": datetime(2000, 1, 1, tzinfo=UTC),
    "rating_range": (0.0, 5.0),
}


def best_of(step: Callable[[], None], repeat: int) -> float:
    """Seconds of the fastest of `repeat` runs, after one untimed warm-up run."""
    step()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("spark_app").setLevel(logging.WARNING)
    options = load_config().kafka.consumer_options

    java_home = use_preferred_java()  # as scripts/test and scripts/submit do
    with tempfile.TemporaryDirectory(prefix="bench-ingest-parts-") as tmp:
        work = Path(tmp)
        broker = LocalKafka(home=work / "kafka", brokers=1)
        bootstrap = broker.start()
        spark = create_session(app_name="bench-ingest-parts", master="local[2]",
                               shuffle_partitions=4,
                               extra_conf={"spark.ui.enabled": "false",
                                           "spark.driver.memory": "4g"})
        try:
            topic = f"parts-{int(time.time())}"
            produce(spark, bootstrap, topic, args.events, args.partitions)
            results = measure(spark, bootstrap, topic, options, work, args.repeat)
        finally:
            spark.stop()
            broker.stop()

    print(f"\nParts of the ingest, {args.events:,} events, {args.partitions} partitions, "
          f"local[2], best of {args.repeat} after a warm-up pass, "
          f"JVM {java_home or 'java on PATH'}")
    print(f"{'step':62s} {'seconds':>8s} {'events/s':>10s}")
    for name, seconds in results:
        print(f"{name:62s} {seconds:8.2f} {args.events / seconds:10,.0f}")
    return 0


def measure(spark: SparkSession, bootstrap: str, topic: str, options: dict[str, str],
            work: Path, repeat: int) -> list[tuple[str, float]]:
    def source(consumer_options: dict[str, str]) -> DataFrame:
        reader = (spark.read.format("kafka").option("kafka.bootstrap.servers", bootstrap)
                  .option("subscribe", topic))
        for key, value in consumer_options.items():
            reader = reader.option(f"kafka.{key}", value)
        return reader.load()

    def noop(df: DataFrame) -> Callable[[], None]:
        return lambda: df.write.format("noop").mode("overwrite").save()

    runs = [0]

    def handler() -> None:
        runs[0] += 1
        run = work / f"handler-{runs[0]}"
        settings = BatchSettings.from_config(
            load_config(overrides=["training.threshold=1000000000000"]),
            state=str(run / "state"), results=str(run))
        BatchProcessor(settings, lambda *a: (None, None)).process(source(options), 0)

    steps = [
        ("Kafka source alone, Kafka's default consumer options", noop(source({}))),
        ("Kafka source alone, the job's consumer options", noop(source(options))),
        ("+ classify (parse, 27 checks)", noop(classify(source(options), **LIMITS))),
        ("+ valid events to Parquet, one pass, Parquet defaults",
         lambda: staged_rows(classify(source(options), **LIMITS), 10_000)
         .where(F.col(S.STATUS) == VALID).select(*S.EVENT_SCHEMA.fieldNames())
         .write.mode("overwrite").parquet(str(work / "floor"))),
        ("the job's batch handler (one pass, footer counts, ledger)", handler),
    ]
    results = []
    for name, step in steps:
        seconds = best_of(step, repeat)
        log.info("%s: %.2f s", name, seconds)
        results.append((name, seconds))
    return results


if __name__ == "__main__":
    sys.exit(main())
