"""Sustained ingest rate: Kafka -> validated -> persisted, beside a plain kafka-python loop.

    .venv/bin/python benchmarks/bench_ingest.py [--events 1000000] [--partitions 4] [--repeat 3]

Starts a local broker in a temporary folder (or uses --bootstrap-servers), pre-produces the
events with Spark's Kafka sink, then in the same run measures
  1. the streaming job's batch handler (validation, quarantine, exactly-once Parquet store,
     ledger) over the whole topic with an availableNow trigger, with the Kafka consumer options
     of conf/defaults.yaml, after a warm-up query over a separate topic (--warmup-events,
     default two micro-batches) so that the JVM has compiled the hot code, as in a job that
     has been running a while, and
  2. a plain kafka-python consumer loop that reads and json-decodes the same topic, and the
     same loop on --loop-processes processes (default 2, the job's cores; the strict figure),
and prints the rates and ratios, and the warm-up query's (cold JVM) rate and its first
micro-batch's, the first batch of a freshly started job. With
--repeat N, steps 1 and 2 run N times in turn (each query over the whole topic, with its own
checkpoint and store) and the median ratio is printed too: one measurement of a 1M batch
varies by ~15% on a shared 2-core machine.
Target (issue 3): >= 200k events/s and >= 3x the loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from infra.java import use_preferred_java
from infra.kafka_local import LocalKafka
from recsys_contract.config import load_config
from spark_app.session import create_session
from spark_app.stream.batch import BatchProcessor, BatchSettings
from spark_app.stream.job import StopFlag, kafka_stream, run_query

log = logging.getLogger("bench_ingest")
# The warm-up query runs this many micro-batches of the measured size first, so that the
# measured batches run the JIT-compiled code of a job that has been running a while. After one
# batch of 300k (the default until 2026-11-27), the two measured batches of 500k took 3.2-3.7 s
# and 2.3-2.7 s; after two batches of 500k, 2.6-2.8 s and 2.1-2.5 s (the first batch of any
# query, the warm-up's too, still costs more than the next).
WARMUP_BATCHES = 2


def produce(spark: SparkSession, bootstrap: str, topic: str, events: int, partitions: int) -> None:
    """Write `events` JSON sales events to the topic with Spark's batch Kafka sink."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()
    i = F.col("id")
    value = F.to_json(F.struct(
        F.concat(F.lit("e"), i.cast("string")).alias("event_id"),
        F.concat(F.lit("u"), (i % 50_000).cast("string")).alias("user_id"),
        F.concat(F.lit("p"), ((i * 7919) % 10_000).cast("string")).alias("product_id"),
        (F.lit(1) + i % 3).cast("int").alias("quantity"),
        F.lit("2026-11-01T09:00:00.000Z").alias("timestamp"),
        F.round(F.lit(1.5) + i % 50, 2).alias("price"),
    ))
    (spark.range(events, numPartitions=partitions)
     .select(F.concat(F.lit("u"), (i % 50_000).cast("string")).alias("key"),
             value.alias("value"))
     .write.format("kafka").option("kafka.bootstrap.servers", bootstrap)
     .option("topic", topic).save())


def spark_ingest(spark: SparkSession, bootstrap: str, topic: str, work: Path,
                 per_trigger: int, consumer_options: dict[str, str],
                 ) -> tuple[float, float, int, list[tuple[int, float]]]:
    """(wall seconds, sum of batch durations in seconds, events stored, (rows, seconds) of each
    micro-batch); state under `work`."""
    settings = BatchSettings.from_config(
        load_config(overrides=["training.threshold=1000000000000"]),
        state=str(work / "state"), results=str(work))
    processor = BatchProcessor(settings, lambda *a: (None, None))
    stream = kafka_stream(spark, bootstrap_servers=bootstrap, topic=topic,
                          starting_offsets="earliest", max_offsets_per_trigger=per_trigger,
                          fail_on_data_loss=True,
                          consumer_options=consumer_options)
    started = time.perf_counter()
    query = run_query(stream, processor, checkpoint=work / "checkpoint",
                      trigger_interval_seconds=0, available_now=True, stop=StopFlag())
    wall = time.perf_counter() - started
    busy = sum(p["batchDuration"] for p in query.recentProgress) / 1000
    for p in query.recentProgress:
        log.info("batch %s: %s rows in %.2f s (Spark's parts, ms: %s)", p["batchId"],
                 p["numInputRows"], p["batchDuration"] / 1000, p["durationMs"])
    batches = [(int(p["numInputRows"]), p["batchDuration"] / 1000) for p in query.recentProgress]
    return wall, busy, processor.ledger.total_valid, batches


def _consumer(bootstrap: str, fetch_max_wait_ms: int, *topics: str) -> Any:
    """The loop's kafka-python consumer (the job's fetch.max.wait.ms, so that neither waits
    longer at the end of the topic)."""
    from kafka import KafkaConsumer

    return KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, group_id=None, max_poll_records=5000,
                         fetch_max_bytes=64 * 1024 * 1024, fetch_max_wait_ms=fetch_max_wait_ms)


def _drain(consumer: Any, records: int) -> None:
    """Read and json-decode `records` messages."""
    while records > 0:
        for batch in consumer.poll(timeout_ms=1000).values():
            for record in batch:
                json.loads(record.value)
            records -= len(batch)


def plain_loop(bootstrap: str, topic: str, events: int, fetch_max_wait_ms: int = 500) -> float:
    """Seconds for a kafka-python consumer to read and json-decode every message."""
    consumer = _consumer(bootstrap, fetch_max_wait_ms, topic)
    started = time.perf_counter()
    _drain(consumer, events)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def _loop_part(bootstrap: str, topic: str, partitions: list[int], fetch_max_wait_ms: int,
               times: Any, ready: Any) -> None:
    """One process of plain_loop_processes: read `partitions` to their end; (start, end)."""
    from kafka import TopicPartition

    consumer = _consumer(bootstrap, fetch_max_wait_ms)
    assigned = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    records = sum(consumer.end_offsets(assigned).values())
    ready.wait()  # every process has its consumer: they start reading together
    started = time.time()
    _drain(consumer, records)
    times.put((started, time.time()))
    consumer.close()


def plain_loop_processes(bootstrap: str, topic: str, partitions: int, processes: int,
                         fetch_max_wait_ms: int = 500) -> float:
    """plain_loop on `processes` processes, each reading its share of the topic's partitions:
    seconds from the first process's start to the last one's end."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    times, ready = context.Queue(), context.Barrier(processes)
    workers = [context.Process(target=_loop_part, args=(
        bootstrap, topic, list(range(i, partitions, processes)), fetch_max_wait_ms, times,
        ready)) for i in range(processes)]
    for worker in workers:
        worker.start()
    spans = [times.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(60)
    return max(end for _, end in spans) - min(start for start, _ in spans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--per-trigger", type=int, default=None,
                        help="maxOffsetsPerTrigger of the streaming read (default: the job's, "
                             "conf/defaults.yaml kafka.max_offsets_per_trigger)")
    parser.add_argument("--warmup-events", type=int, default=None,
                        help="events of the warm-up query on its own topic (0: none; "
                             "default: two micro-batches, 2 x --per-trigger)")
    parser.add_argument("--bootstrap-servers", help="use this broker instead of starting one")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Spark setting for the session (repeatable)")
    parser.add_argument("--consumer-option", action="append", default=[], metavar="KEY=VALUE",
                        help="override one of conf/defaults.yaml kafka.consumer_options "
                             "(repeatable)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measure the job and the loop this many times, in turn (default 3)")
    parser.add_argument("--loop-processes", type=int, default=2,
                        help="also time the loop on this many processes, each reading its share "
                             "of the partitions (default 2: the job's cores, local[2]; 0: skip)")
    parser.add_argument("--verbose", action="store_true", help="log per-step batch timings")
    args = parser.parse_args()
    kafka = load_config(
        overrides=[f"kafka.consumer_options.{kv}" for kv in args.consumer_option]
    ).kafka
    consumer_options = kafka.consumer_options
    if args.per_trigger is None:
        args.per_trigger = kafka.max_offsets_per_trigger
    if args.warmup_events is None:
        args.warmup_events = WARMUP_BATCHES * (args.per_trigger or args.events)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # selector "blocking" chatter
    logging.getLogger("spark_app").setLevel(logging.DEBUG if args.verbose else logging.WARNING)

    java_home = use_preferred_java()  # as scripts/test and scripts/submit do
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        broker = None
        bootstrap = args.bootstrap_servers
        if bootstrap is None:
            broker = LocalKafka(home=work / "kafka", brokers=1)
            bootstrap = broker.start()
        spark = create_session(app_name="bench-ingest", master="local[2]", shuffle_partitions=4,
                               extra_conf={"spark.ui.enabled": "false",
                                           "spark.driver.memory": "4g",
                                           **dict(c.split("=", 1) for c in args.conf)})
        try:
            stamp = int(time.time())
            topic, warmup_topic = f"bench-{stamp}", f"bench-warmup-{stamp}"
            started = time.perf_counter()
            produce(spark, bootstrap, topic, args.events, args.partitions)
            if args.warmup_events:
                produce(spark, bootstrap, warmup_topic, args.warmup_events, args.partitions)
            log.info("pre-produced %d + %d events in %.1f s", args.events, args.warmup_events,
                     time.perf_counter() - started)
            warmup = None
            if args.warmup_events:
                warm_wall, _, _, warm_batches = spark_ingest(
                    spark, bootstrap, warmup_topic, work / "warmup", args.per_trigger,
                    consumer_options)
                warmup = (warm_wall, args.warmup_events / warm_wall, warm_batches[0])
            measured = []
            for i in range(args.repeat):
                wall, busy, stored, _ = spark_ingest(
                    spark, bootstrap, topic, work / f"measured-{i}", args.per_trigger,
                    consumer_options)
                assert stored == args.events, f"stored {stored} of {args.events}"
                wait_ms = int(consumer_options.get("fetch.max.wait.ms", 500))
                loop = plain_loop(bootstrap, topic, args.events, wait_ms)
                loops = plain_loop_processes(bootstrap, topic, args.partitions,
                                             args.loop_processes, wait_ms) \
                    if args.loop_processes else None
                measured.append((wall, busy, loop, loops))
        finally:
            spark.stop()
            if broker is not None:
                broker.stop()
    print(f"\nIngest of {args.events:,} events, {args.partitions} partitions, local[2], "
          f"maxOffsetsPerTrigger={args.per_trigger:,}, JVM {java_home or 'java on PATH'}")
    ratios = []
    for i, (wall, busy, loop, loops) in enumerate(measured, start=1):
        loop_rate = args.events / loop
        rows = [
            ("Spark job, wall (query start to end)", wall, args.events / wall),
            ("Spark job, sustained (sum of batch times)", busy, args.events / busy),
            ("plain kafka-python loop (read + json)", loop, loop_rate),
        ]
        if loops is not None:
            rows.append((f"the same loop on {args.loop_processes} processes", loops,
                         args.events / loops))
        print(f"{f'measurement {i} of {len(measured)}':45s} {'seconds':>8s} {'events/s':>10s} "
              f"{'vs loop':>8s}")
        for name, seconds, rate in rows:
            print(f"{name:45s} {seconds:8.1f} {rate:10,.0f} {rate / loop_rate:7.2f}x")
        ratios.append((args.events / busy, loop / busy))
        if loops is not None:
            print(f"{'strict: the job sustained / the loop on':39s} {args.loop_processes} "
                  f"processes {loops / busy:17.2f}x")
    if len(measured) > 1:
        print(f"median of {len(measured)}: job sustained "
              f"{statistics.median(r for r, _ in ratios):,.0f} events/s, "
              f"{statistics.median(x for _, x in ratios):.2f}x the loop "
              f"(each: {', '.join(f'{x:.2f}x' for _, x in ratios)})")
    if warmup is not None:
        print(f"warm-up query, cold JVM: {args.warmup_events:,} events in {warmup[0]:.1f} s "
              f"= {warmup[1]:,.0f} events/s (wall)")
        rows, seconds = warmup[2]
        print(f"a cold job's first micro-batch (the warm-up query's): {rows:,} events in "
              f"{seconds:.1f} s = {rows / seconds:,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
