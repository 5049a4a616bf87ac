"""State and results on HDFS against the local disk (issue 20), alternated in one run.

    flock /tmp/recsys-bench.lock .venv/bin/python benchmarks/bench_storage.py \
        [--events 1000000] [--train-events 1000000] [--rounds 3] [--warm-cycles 4]

Starts a Kafka broker and an HDFS (infra/hdfs_local.py, one NameNode and one DataNode on this
machine) in a temporary folder and one local[2] SparkSession, then measures, alternating the
local disk and HDFS so that both see the same JIT, caches and machine load:
  1. ingest: the streaming job's batch handler over a pre-produced topic (availableNow, the
     job's batch size), its store, quarantine, ledger and checkpoint under a fresh folder of
     each filesystem every time, after a warm-up query on the local disk; the sustained rate
     (events / sum of batch times) of each;
  2. the training cycle (spark_app.training.run_training) on --train-events synthetic events
     (bench_training's generator), state and results on each filesystem: --warm-cycles cycles
     first (alternated, not measured), then --rounds pairs; each filesystem keeps its state
     folder, so every measured cycle is a warm one of a streaming job (id maps known).
Prints each measurement and the medians' ratios. Targets: HDFS ingest >= 0.7x local, HDFS
cycle <= 1.2x local.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_ingest import WARMUP_BATCHES, produce
from infra.hdfs_local import LocalHdfs
from infra.java import use_preferred_java
from infra.kafka_local import LocalKafka
from recsys_contract.config import load_config
from spark_app.session import create_session
from spark_app.storage import join
from spark_app.stream.batch import BatchProcessor, BatchSettings
from spark_app.stream.job import StopFlag, kafka_stream, run_query
from spark_app.training import run_training
from spark_app.training.synthetic import synthetic_events

log = logging.getLogger("bench_storage")


def ingest(spark, bootstrap: str, topic: str, root: str, per_trigger: int,
           consumer_options: dict[str, str]) -> tuple[float, int]:
    """(sum of batch durations in seconds, events stored) of the job's handler over `topic`,
    its state under `root` (a URI)."""
    no_training = load_config(overrides=["training.threshold=1000000000000"])
    settings = BatchSettings.from_config(no_training, state=join(root, "state"), results=root)
    processor = BatchProcessor(settings, lambda *a: (None, None))
    stream = kafka_stream(spark, bootstrap_servers=bootstrap, topic=topic,
                          starting_offsets="earliest", max_offsets_per_trigger=per_trigger,
                          fail_on_data_loss=True, consumer_options=consumer_options)
    query = run_query(stream, processor, checkpoint=join(root, "checkpoint"),
                      trigger_interval_seconds=0, available_now=True, stop=StopFlag())
    busy = sum(p["batchDuration"] for p in query.recentProgress) / 1000
    return busy, processor.ledger.total_valid


def cycle(spark, events, n_events: int, root: str, sequence: int) -> float:
    """Seconds of one training run with state and results under `root`."""
    cfg = load_config(overrides=[f"paths.results={join(root, 'results')}",
                                 f"paths.state={join(root, 'state')}"])
    started = time.perf_counter()
    run_training(spark, events, cfg, sequence=sequence,
                 event_counts={"training_set": n_events, "total_valid": n_events,
                               "new_since_last_run": n_events})
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="ingested events")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--train-events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="measured pairs of each part")
    parser.add_argument("--warm-cycles", type=int, default=4,
                        help="training cycles before the measured ones (alternated)")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("spark_app").setLevel(logging.WARNING)
    kafka_cfg = load_config().kafka
    per_trigger = kafka_cfg.max_offsets_per_trigger
    java_home = use_preferred_java()
    ingest_runs: dict[str, list[float]] = {"local": [], "hdfs": []}
    cycles: dict[str, list[float]] = {"local": [], "hdfs": []}
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        work = Path(tmp)
        hdfs = LocalHdfs(work / "hdfs")
        broker = LocalKafka(home=work / "kafka", brokers=1)
        spark = None
        try:
            roots = {"local": (work / "local").as_uri(), "hdfs": join(hdfs.start(), "bench")}
            bootstrap = broker.start()
            spark = create_session(app_name="bench-storage", master="local[2]",
                                   shuffle_partitions=4,
                                   extra_conf={"spark.ui.enabled": "false",
                                               "spark.driver.memory": "4g"})
            if not args.skip_ingest:
                stamp = int(time.time())
                topic, warm = f"bench-{stamp}", f"bench-warm-{stamp}"
                produce(spark, bootstrap, topic, args.events, args.partitions)
                produce(spark, bootstrap, warm, WARMUP_BATCHES * per_trigger, args.partitions)
                ingest(spark, bootstrap, warm, join(roots["local"], "warm"), per_trigger,
                       kafka_cfg.consumer_options)
                for i in range(args.rounds):
                    for fs in (("local", "hdfs") if i % 2 == 0 else ("hdfs", "local")):
                        busy, stored = ingest(spark, bootstrap, topic,
                                              join(roots[fs], f"ingest-{i}"), per_trigger,
                                              kafka_cfg.consumer_options)
                        assert stored == args.events, f"{fs}: stored {stored} of {args.events}"
                        ingest_runs[fs].append(busy)
                        log.info("ingest %s %d: %.2f s, %.0f events/s", fs, i, busy,
                                 args.events / busy)
            if not args.skip_training:
                events = synthetic_events(spark, args.train_events, 50_000, 10_000, 8,
                                          42).cache()
                n_events = events.count()
                order = [("local", "hdfs") if i % 2 == 0 else ("hdfs", "local")
                         for i in range(args.warm_cycles // 2 + args.rounds)]
                sequence = 0
                for i, pair in enumerate(order):
                    for fs in pair:
                        sequence += 1
                        seconds = cycle(spark, events, n_events, join(roots[fs], "train"),
                                        sequence)
                        measured = i >= args.warm_cycles // 2
                        if measured:
                            cycles[fs].append(seconds)
                        log.info("cycle %d %s: %.2f s%s", sequence, fs, seconds,
                                 "" if measured else " (warm-up)")
        finally:
            if spark is not None:
                spark.stop()
            broker.stop()
            hdfs.stop()
    print(f"\nState and results on HDFS (1 NameNode + 1 DataNode, same machine) vs the local "
          f"disk, local[2], JVM {java_home or 'java on PATH'}")
    if ingest_runs["local"]:
        local, remote = (statistics.median(ingest_runs[k]) for k in ("local", "hdfs"))
        print(f"ingest of {args.events:,} events, sum of batch times (s): local "
              f"{[round(x, 2) for x in ingest_runs['local']]}, hdfs "
              f"{[round(x, 2) for x in ingest_runs['hdfs']]}")
        print(f"  medians: local {args.events / local:,.0f} events/s, hdfs "
              f"{args.events / remote:,.0f} events/s: HDFS = {local / remote:.2f}x local "
              f"(target >= 0.7x)")
    if cycles["local"]:
        local, remote = (statistics.median(cycles[k]) for k in ("local", "hdfs"))
        print(f"training cycle on {args.train_events:,} events, warm (s): local "
              f"{[round(x, 2) for x in cycles['local']]}, hdfs "
              f"{[round(x, 2) for x in cycles['hdfs']]}")
        print(f"  medians: local {local:.2f} s, hdfs {remote:.2f} s: HDFS = "
              f"{remote / local:.2f}x local (target <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
