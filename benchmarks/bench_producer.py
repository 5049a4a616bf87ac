"""Benchmark of the sales simulator's producer against Kafka's own Java ProducerPerformance.

Starts a local broker (infra.kafka_local.LocalKafka, in a temporary folder) unless
--bootstrap-servers is given, then on the same broker:
  1. the generator alone (events/s it can encode, no Kafka);
  2. the project's producer: N generated events sent and acknowledged (acks=all, idempotent);
  3. org.apache.kafka.tools.ProducerPerformance with the same count, the same record size
     (the average encoded event), acks=all, throughput -1 and the same linger/batch/compression;
and prints both rates and their ratio. --write-results puts the table into
benchmarks/RESULTS.md under "## Producer (issue 5)".

    .venv/bin/python -m benchmarks.bench_producer                 # 1,000,000 events
    .venv/bin/python -m benchmarks.bench_producer --events 200000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import platform
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from infra.kafka_local import LocalKafka
from producer.generator import GeneratorConfig, SalesGenerator
from producer.runner import pump
from producer.transport import (
    COMPRESSION_TYPES,
    KafkaTransport,
    ProducerSettings,
    ensure_topic,
)
from producer.workers import WorkerPoolTransport

log = logging.getLogger("bench_producer")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
HEADING = "## Producer (issue 5)"
KAFKA_JARS = REPO / ".deps" / "kafka"
JAVA_SUMMARY = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency"
)


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    mb_per_s: float
    note: str = ""
    cpu_s: float | None = None  # CPU time of the sending process(es) during the run
    broker_cpu_s: float | None = None  # CPU time of the broker during the run

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes (all their threads)."""
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def broker_pid(bootstrap: str) -> int | None:
    """The pid listening on the first bootstrap port (to measure the broker's CPU), if found."""
    port = int(bootstrap.split(",")[0].rpartition(":")[2])
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    except psutil.AccessDenied:
        return None
    return None


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def generator_for(args: argparse.Namespace) -> SalesGenerator:
    return SalesGenerator(GeneratorConfig(users=args.users, products=args.products,
                                          segments=args.segments, seed=args.seed))


def bench_generator(args: argparse.Namespace) -> tuple[Result, float]:
    """Encode N records without sending them; returns the result and the mean value size."""
    started = time.perf_counter()
    count = size = 0
    for chunk in generator_for(args).record_chunks(args.events):
        count += len(chunk)
        size += sum(map(len, chunk.values))
    seconds = time.perf_counter() - started
    return Result("generator only (no Kafka)", count, seconds, size / seconds / 1e6), size / count


def bench_python(args: argparse.Namespace, bootstrap: str, settings: ProducerSettings,
                 broker: int | None, workers: int) -> Result:
    """Send N generated events; time from the first send to the last acknowledgement."""
    topic = f"bench-python-{workers}-{int(time.time())}"
    ensure_topic(bootstrap, topic, args.partitions)
    chunks = generator_for(args).record_chunks(args.events)
    profiler = cProfile.Profile() if args.profile else None
    transport: KafkaTransport | WorkerPoolTransport
    if workers > 1:
        transport = WorkerPoolTransport(bootstrap, topic, settings, workers=workers)
    else:
        transport = KafkaTransport(bootstrap, topic, settings)
    with transport:
        transport.send_many(*warmup_records(args))
        transport.flush(60)
        warm, warm_bytes = transport.stats.acked, transport.stats.value_bytes
        pids = [os.getpid(), *getattr(transport, "pids", [])]
        cpu_before = cpu_seconds(pids)
        broker_before = cpu_seconds([broker]) if broker else 0.0
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        pump(chunks, transport, max_unconfirmed=settings.max_unconfirmed)
        complete = transport.flush(300)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before
        broker_cpu = cpu_seconds([broker]) - broker_before if broker else None
        if profiler:
            profiler.disable()
    stats = transport.stats
    if not complete or stats.failed:
        raise SystemExit(f"python producer: {stats.failed} failed, {stats.in_flight} unconfirmed")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        print("\ncProfile of the main thread (the I/O thread is not included):")
        print(out.getvalue())
    acked = stats.acked - warm
    mb = (stats.value_bytes - warm_bytes) / seconds / 1e6
    processes = f"{workers} worker processes" if workers > 1 else "1 process"
    return Result(f"project producer (kafka-python, {processes})", acked, seconds, mb,
                  f"keyed by user, {args.partitions} partition(s)", cpu, broker_cpu)


def warmup_records(args: argparse.Namespace) -> tuple[list, list]:
    """A few records to open the connection and fetch metadata before timing starts."""
    records = list(generator_for(args).records(100))
    return [r.key for r in records], [r.value for r in records]


def bench_java(args: argparse.Namespace, bootstrap: str, record_size: int,
               settings: ProducerSettings, broker: int | None) -> Result:
    """Kafka's ProducerPerformance on the same broker with the same producer settings."""
    topic = f"bench-java-{int(time.time())}"
    ensure_topic(bootstrap, topic, args.partitions)
    command = [
        "java", "-Xmx512m", "-cp", f"{KAFKA_JARS}/*", "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(args.events), "--throughput", "-1",
        "--record-size", str(record_size),
        "--command-property", f"bootstrap.servers={bootstrap}", "acks=all",
        "enable.idempotence=true", f"linger.ms={settings.linger_ms}",
        f"batch.size={settings.batch_size}", f"compression.type={settings.effective_compression}",
        "max.in.flight.requests.per.connection="
        f"{settings.max_in_flight_requests_per_connection}",
        "--reporting-interval", "600000",
    ]
    print("java:", " ".join(command[:6]), "...", " ".join(command[6:]))
    cpu_before = children_cpu_seconds()
    broker_before = cpu_seconds([broker]) if broker else 0.0
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    cpu = children_cpu_seconds() - cpu_before
    broker_cpu = cpu_seconds([broker]) - broker_before if broker else None
    found = JAVA_SUMMARY.findall(done.stdout)
    if done.returncode != 0 or not found:
        raise SystemExit(f"ProducerPerformance failed ({done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-2000:]}")
    sent, rate, mb, latency = found[-1]
    return Result("Kafka ProducerPerformance (Java)", int(sent), int(sent) / float(rate),
                  float(mb) * 1.048576, f"random payload of {record_size} B, no key, "
                  f"avg latency {float(latency):.0f} ms; CPU includes JVM start", cpu, broker_cpu)


def table(results: list[Result]) -> str:
    lines = ["| run | events | seconds | events/s | MB/s | sender CPU µs/event "
             "| broker CPU µs/event | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]

    def per_event(cpu: float | None, events: int) -> str:
        return "" if cpu is None else f"{cpu / events * 1e6:.1f}"

    for r in results:
        lines.append(f"| {r.name} | {r.events:,} | {r.seconds:.2f} | {r.rate:,.0f} | "
                     f"{r.mb_per_s:.1f} | {per_event(r.cpu_s, r.events)} | "
                     f"{per_event(r.broker_cpu_s, r.events)} | {r.note} |")
    return "\n".join(lines)


def write_results(text: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the others alone."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"{HEADING}\n\n{text.strip()}\n"
    start = current.find(HEADING)
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + section
    else:
        after = current.find("\n## ", start + len(HEADING))
        rest = current[after + 1:] if after >= 0 else ""
        updated = current[:start] + section + ("\n" + rest if rest else "")
    RESULTS.write_text(updated)
    print(f"written to {RESULTS}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--bootstrap-servers", help="use this broker instead of starting one")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=2_000)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    defaults = ProducerSettings()
    parser.add_argument("--compression", choices=COMPRESSION_TYPES,
                        default=defaults.compression_type)
    parser.add_argument("--linger-ms", type=int, default=defaults.linger_ms)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="producer processes to try, one run each (default: 1 2); "
                        "1 = one KafkaProducer, N > 1 = producer.workers")
    parser.add_argument("--skip-java", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the Python send loop and print the top functions")
    parser.add_argument("--write-results", action="store_true",
                        help=f"write the table to {RESULTS.relative_to(REPO)}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    settings = ProducerSettings(compression_type=args.compression, linger_ms=args.linger_ms,
                                batch_size=args.batch_size)
    print(f"settings: events={args.events:,} partitions={args.partitions} acks=all "
          f"idempotence=on compression={settings.effective_compression} "
          f"linger_ms={settings.linger_ms} "
          f"batch_size={settings.batch_size} max_in_flight="
          f"{settings.max_in_flight_requests_per_connection} users={args.users} "
          f"products={args.products}")
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-producer-") as home:
        broker = None
        bootstrap = args.bootstrap_servers
        if bootstrap is None:
            broker = LocalKafka(home=Path(home) / "kafka", brokers=1)
            bootstrap = broker.start(timeout=120)
        try:
            broker_process = broker_pid(bootstrap)
            generated, record_size = bench_generator(args)
            print(f"generator: {generated.rate:,.0f} events/s, mean value {record_size:.0f} B")
            results = []
            for workers in args.workers:
                results.append(bench_python(args, bootstrap, settings, broker_process, workers))
                print(f"python, {workers} process(es): {results[-1].rate:,.0f} acknowledged "
                      "events/s")
            if not args.skip_java:
                results.append(bench_java(args, bootstrap, round(record_size), settings,
                                          broker_process))
                print(f"java: {results[-1].rate:,.0f} records/s")
        finally:
            if broker is not None:
                broker.stop()
    results.append(generated)
    report = table(results)
    ratio = ""
    if not args.skip_java:
        java = results[-2]
        ratio = "\n" + "\n".join(
            f"{r.name}: {r.rate / java.rate:.2f} of Java's rate" for r in results[:-2]
        )
    load = os.getloadavg()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    context = (f"Measured {when}. Machine: {os.cpu_count()} cores shared with other work (load "
               f"average "
               f"{load_at_start:.1f} at the start, {load[0]:.1f} at the end), "
               f"Python {platform.python_version()}, broker 4.3.1 on 127.0.0.1 (1 node).")
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-results"]
    command = " ".join([".venv/bin/python -m benchmarks.bench_producer", *shown])
    text = (f"Command: `{command}`\n\n"
            f"Settings: acks=all, idempotence on, compression={settings.effective_compression}, "
            f"linger.ms={settings.linger_ms}, batch.size={settings.batch_size}, "
            f"max.in.flight={settings.max_in_flight_requests_per_connection}, "
            f"{args.partitions} partition(s).\n\n{report}\n{ratio}\n\n{context}\n")
    print()
    print(text)
    if args.write_results:
        write_results(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
