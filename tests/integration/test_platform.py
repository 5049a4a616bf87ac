"""The local platform end to end: a real Kafka (1 and 3 nodes), Spark's Kafka source, a
Spark standalone cluster with spark-submit, and the named errors of a bad start.

Every service here runs on loopback in pytest's tmp_path and is stopped in `finally`.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from infra.errors import (
    JavaNotFoundError,
    MissingJarsError,
    PortInUseError,
    ServiceExitedError,
)
from infra.kafka_local import LocalKafka
from infra.spark_cluster import LocalSparkCluster
from infra.wait import wait_until

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
WORDCOUNT_JOB = Path(__file__).parent / "jobs" / "wordcount_job.py"


def sales(count: int) -> list[dict[str, Any]]:
    """`count` distinct JSON-able messages, in id order."""
    return [
        {"id": i, "user": f"u{i % 97}", "product": f"p{i % 31}", "quantity": 1 + i % 5}
        for i in range(count)
    ]


def produce_confirmed(bootstrap: str, topic: str, messages: list[dict[str, Any]]) -> None:
    """Send every message with acks=all and wait until each one is acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, json.dumps(m).encode("utf-8")) for m in messages]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)


def consume_exactly(bootstrap: str, topic: str, count: int, timeout: float) -> list[Any]:
    """Read `count` JSON messages from the start of `topic` (no consumer group)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    received: list[Any] = []

    def got_all() -> bool:
        for records in consumer.poll(timeout_ms=500).values():
            received.extend(json.loads(r.value.decode("utf-8")) for r in records)
        return len(received) >= count

    try:
        wait_until(got_all, timeout, f"{count} messages from {topic}")
    finally:
        consumer.close()
    return received


def java_processes_mentioning(path: Path) -> list[int]:
    """Pids of live java processes whose command line contains `path`."""
    pids = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and "java" in cmdline \
                and str(path) in cmdline:
            pids.append(proc.pid)
    return pids


# ---- Spark reads what Kafka got ------------------------------------------------------------


def test_spark_kafka_source_reads_exactly_the_messages_sent(
    kafka: LocalKafka, spark: Any, tmp_path: Path
) -> None:
    topic = f"platform-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=2)
    sent = sales(10_000)
    produce_confirmed(kafka.bootstrap_servers, topic, sent)

    table = f"received_{uuid.uuid4().hex[:8]}"
    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("CAST(value AS STRING) AS value")
    )
    query = (
        stream.writeStream.format("memory")
        .queryName(table)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    try:
        assert query.awaitTermination(timeout=180), "availableNow query did not finish"
        assert query.exception() is None
    finally:
        query.stop()
    rows = spark.table(table).collect()
    received = sorted((json.loads(r.value) for r in rows), key=lambda m: m["id"])
    assert received == sent


# ---- three brokers, one stopped ------------------------------------------------------------


@pytest.fixture
def three_brokers(tmp_path: Path) -> Iterator[LocalKafka]:
    """A 3-node KRaft cluster of its own, stopped even if the test fails."""
    cluster = LocalKafka(tmp_path / "kafka3", brokers=3)
    try:
        cluster.start(timeout=180)
        yield cluster
    finally:
        cluster.stop()


def test_three_broker_cluster_serves_every_message_with_one_broker_down(
    three_brokers: LocalKafka,
) -> None:
    from kafka.admin import KafkaAdminClient

    topic = "replicated"
    three_brokers.create_topic(topic, partitions=3, replication=3)
    sent = sales(3_000)
    produce_confirmed(three_brokers.bootstrap_servers, topic, sent)

    admin = KafkaAdminClient(bootstrap_servers=three_brokers.bootstrap_servers)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    leader = next(p["leader_id"] for p in described["partitions"] if p["partition_index"] == 0)
    three_brokers.stop_broker(leader)
    alive = {n["node_id"]: n["alive"] for n in three_brokers.status()["nodes"]}
    assert alive == {n: n != leader for n in (1, 2, 3)}

    received = consume_exactly(three_brokers.bootstrap_servers, topic, len(sent), timeout=90)
    assert sorted(received, key=lambda m: m["id"]) == sent


# ---- Spark standalone cluster ---------------------------------------------------------------


@pytest.fixture
def spark_cluster(tmp_path: Path) -> Iterator[LocalSparkCluster]:
    """A master and two 1-core workers of its own, stopped even if the test fails."""
    cluster = LocalSparkCluster(tmp_path / "spark-cluster", workers=2, cores_per_worker=1,
                                memory_per_worker="1g")
    try:
        cluster.start(timeout=180)
        yield cluster
    finally:
        cluster.stop()


def test_wordcount_job_runs_on_both_workers_of_the_standalone_cluster(
    spark_cluster: LocalSparkCluster, tmp_path: Path
) -> None:
    words = ["kafka", "spark", "stream", "graph", "model", "event"]
    lines = [" ".join(words[(i + j) % len(words)] for j in range(i % 5 + 1)) for i in range(300)]
    text = tmp_path / "input.txt"
    text.write_text("\n".join(lines) + "\n")
    expected = Counter(w for line in lines for w in line.split())
    output = tmp_path / "counts"

    spark_cluster.submit(
        WORDCOUNT_JOB,
        [str(text), str(output)],
        conf={
            "spark.ui.enabled": "false",
            "spark.executor.memory": "512m",
            "spark.sql.warehouse.dir": str(tmp_path / "warehouse"),
        },
        timeout=300,
    )

    counted: dict[str, int] = {}
    for part in sorted(output.glob("part-*.csv")):
        with open(part, newline="") as fh:
            counted.update({row["word"]: int(row["count"]) for row in csv.DictReader(fh)})
    assert counted == dict(expected)

    def finished_app() -> dict[str, Any] | None:
        done = [a for a in spark_cluster.applications()["completed"]
                if a["name"] == "wordcount-test"]
        return done[0] if done else None

    app = wait_until(finished_app, 30, "the master to list the app as completed")
    assert (app["state"], app["cores"]) == ("FINISHED", 2)
    worker_ids = {w["id"] for w in spark_cluster.workers() if w["state"] == "ALIVE"}
    assert len(worker_ids) == 2
    used = wait_until(
        lambda: {e["worker_id"] for e in spark_cluster.executors(app["id"])} == worker_ids,
        30,
        "both workers to report an executor of the app",
    )
    assert used


# ---- reuse and clean stop -------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m infra.kafka_cli ...` the way scripts/kafka does."""
    return subprocess.run(
        [sys.executable, "-m", "infra.kafka_cli", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False,
    )


def test_second_start_reuses_the_running_broker_and_stop_leaves_nothing(
    tmp_path: Path,
) -> None:
    home = tmp_path / "kafka"
    first = LocalKafka(home)
    try:
        bootstrap = first.start(timeout=120)
        (node,) = first.status()["nodes"]

        second = LocalKafka(home)
        assert second.start(timeout=30) == bootstrap
        assert [n["pid"] for n in second.status()["nodes"]] == [node["pid"]]

        cli_start = run_cli("start", "--home", str(home))
        assert cli_start.returncode == 0, cli_start.stderr
        assert "reusing it" in cli_start.stderr
        assert run_cli("status", "--home", str(home)).returncode == 0

        second.stop()
        assert not psutil.pid_exists(node["pid"])
        assert java_processes_mentioning(home) == []
        assert run_cli("status", "--home", str(home)).returncode == 3
        second.stop()  # idempotent
    finally:
        LocalKafka(home).stop()


# ---- named errors of a bad start ------------------------------------------------------------


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        kafka = LocalKafka(tmp_path / "kafka", base_port=port)
        try:
            with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 .* in use"):
                kafka.start(timeout=30)
            assert java_processes_mentioning(tmp_path) == []
        finally:
            kafka.stop()


def test_a_taken_spark_master_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        cluster = LocalSparkCluster(tmp_path / "spark", workers=1, master_port=port)
        try:
            with pytest.raises(PortInUseError, match=f"port {port} .*Spark master"):
                cluster.start(timeout=30)
        finally:
            cluster.stop()


def test_a_missing_java_is_named_with_java_home(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka", java=tmp_path / "no-jdk" / "bin" / "java")
    with pytest.raises(JavaNotFoundError, match="set JAVA_HOME"):
        kafka.start(timeout=30)


def test_missing_jars_say_run_setup(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka", deps_dir=tmp_path / "no-deps")
    with pytest.raises(MissingJarsError, match="run scripts/setup"):
        kafka.start(timeout=30)


def test_a_broker_that_dies_during_start_reports_its_log(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka", heap="1m")  # the JVM refuses so small a heap
    try:
        with pytest.raises(ServiceExitedError) as caught:
            kafka.start(timeout=60)
    finally:
        kafka.stop()
    message = str(caught.value)
    log_path = tmp_path / "kafka" / "node-1" / "logs" / "stdout.log"
    assert message.splitlines()[0].startswith("Kafka node 1 exited during start (exit code 1)")
    assert f"see {log_path}" in message
    assert "Too small maximum heap" in message


def test_a_broker_run_in_the_foreground_keeps_its_pid_serves_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    """`python -m infra.kafka_cli run`, the compose stack's Kafka: the process becomes the broker
    (status finds it by its pid file), messages go through, SIGTERM ends it (the JVM's exit
    code after its shutdown hooks ran: 128 + 15)."""
    from infra.ports import free_ports, port_answers, port_is_free
    from tests.kafka_helpers import send_all, topic_values

    port = next(p for p in free_ports(8) if port_is_free(p + 1))
    home = tmp_path / "kafka"
    broker = subprocess.Popen(
        [sys.executable, "-m", "infra.kafka_cli", "run", "--home", str(home), "--port", str(port)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def serving() -> bool:
            assert broker.poll() is None, f"the broker exited ({broker.returncode})"
            return port_answers(port)

        wait_until(serving, 120, "the foreground broker to answer")
        bootstrap = f"127.0.0.1:{port}"
        send_all(bootstrap, "fg", [{"n": i} for i in range(10)])
        received = len(topic_values(bootstrap, "fg"))
        pid = LocalKafka(home, base_port=port).status()["nodes"][0]["pid"]
        broker.terminate()
        code = broker.wait(timeout=60)
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
    assert (pid, received, code) == (broker.pid, 10, 143)
