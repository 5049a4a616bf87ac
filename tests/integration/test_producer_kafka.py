"""The sales simulator against a real broker: every record acknowledged and read back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.ports import free_ports
from infra.wait import wait_until
from producer.generator import GeneratorConfig, SalesGenerator
from producer.records import Record
from producer.runner import pump
from producer.transport import DeliveryStats, KafkaTransport, ensure_topic
from producer.workers import WorkerPoolTransport
from recsys_contract.errors import BrokerUnavailableError
from recsys_contract.events import EVENT_ID, USER_ID

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "replay_small.csv"
N = 20_000
SUMMARY = re.compile(r"sent=(\d+) acked=(\d+) failed=(\d+) unconfirmed=(\d+)")


@dataclass
class Delivery:
    stats: DeliveryStats
    sent: list[Record]
    read: list  # kafka ConsumerRecord


def consumer_for(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         client_id="producer-tests")


def topic_size(bootstrap: str, topic: str) -> int:
    """Records on the topic now (end minus start offsets over all partitions)."""
    consumer = consumer_for(bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return 0
        ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        return sum(ends[p] - starts[p] for p in partitions)
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 90) -> list:
    """Every record of the topic, from the beginning; waits until `expected` have arrived."""
    consumer = consumer_for(bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list = []

        def got_all() -> bool:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            return len(records) >= expected

        wait_until(got_all, timeout, f"{expected} records on {topic}", interval=0)
        return records
    finally:
        consumer.close()


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.fixture(scope="module", params=[1, 2], ids=["1-process", "2-workers"])
def delivery(kafka, request: pytest.FixtureRequest) -> Delivery:
    """N generated records (2% malformed) sent to a fresh 3-partition topic, then read back."""
    topic = f"producer-roundtrip-{request.param}"
    ensure_topic(kafka.bootstrap_servers, topic, partitions=3)
    generator = SalesGenerator(GeneratorConfig(seed=11, bad_ratio=0.02))
    transport: KafkaTransport | WorkerPoolTransport
    if request.param == 1:
        transport = KafkaTransport(kafka.bootstrap_servers, topic)
    else:
        transport = WorkerPoolTransport(kafka.bootstrap_servers, topic, workers=request.param)
    with transport:
        pump(generator.record_chunks(N), transport)
    return Delivery(transport.stats, list(generator.records(N)),
                    read_all(kafka.bootstrap_servers, topic, N))


def test_every_record_sent_is_acknowledged(delivery: Delivery) -> None:
    stats = delivery.stats
    assert (stats.sent, stats.acked, stats.failed) == (N, N, 0)


def test_the_topic_holds_exactly_the_records_sent(delivery: Delivery) -> None:
    assert Counter(r.value for r in delivery.read) == Counter(r.value for r in delivery.sent)


def event_ids(values: list[bytes]) -> set[str]:
    """The event ids of the values that are JSON objects with a string event_id."""
    ids = set()
    for value in values:
        try:
            event = json.loads(value)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get(EVENT_ID), str):
            ids.add(event[EVENT_ID])
    return ids


def test_event_ids_read_back_are_those_sent(delivery: Delivery) -> None:
    sent = event_ids([r.value for r in delivery.sent])
    assert event_ids([r.value for r in delivery.read]) == sent and len(sent) > 0.97 * N


def test_each_good_message_is_keyed_by_its_user_id(delivery: Delivery) -> None:
    good = {r.value for r in delivery.sent if r.expected_reason is None}
    wrong = [r for r in delivery.read
             if r.value in good and r.key != json.loads(r.value)[USER_ID].encode()]
    assert wrong == []


def test_each_user_lands_in_one_partition(delivery: Delivery) -> None:
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for record in delivery.read:
        if record.key is not None:
            partitions[record.key].add(record.partition)
    assert {len(p) for p in partitions.values()} == {1}


def test_each_users_records_keep_their_order(delivery: Delivery) -> None:
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    for record in delivery.sent:
        if record.key is not None:
            sent[record.key].append(record.value)
    read: dict[bytes, list[bytes]] = defaultdict(list)
    for record in sorted(delivery.read, key=lambda r: (r.partition, r.offset)):
        if record.key is not None:
            read[record.key].append(record.value)
    assert read == sent


def test_records_use_all_three_partitions(delivery: Delivery) -> None:
    assert {r.partition for r in delivery.read} == {0, 1, 2}


def test_ensure_topic_keeps_an_existing_topic(kafka, delivery: Delivery) -> None:
    assert ensure_topic(kafka.bootstrap_servers, "producer-roundtrip-1", partitions=5) is False


def test_an_unreachable_broker_raises_a_named_error() -> None:
    (port,) = free_ports(1)
    with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{port}"):
        KafkaTransport(f"127.0.0.1:{port}", "sales", connect_timeout_s=2)


def test_cli_sends_n_events_and_exits_zero(kafka) -> None:
    done = run_cli("--bootstrap-servers", kafka.bootstrap_servers, "--topic", "producer-cli",
                   "--create-topic", "--partitions", "2", "--events", "3000", "--bad-ratio", "0.05")
    assert (done.returncode, topic_size(kafka.bootstrap_servers, "producer-cli")) == (0, 3000), (
        done.stderr
    )


def test_cli_replay_arrives_in_timestamp_order(kafka) -> None:
    topic = "producer-replay"
    done = run_cli("--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic,
                   "--create-topic", "--replay", str(FIXTURE), "--user-col", "Customer No.",
                   "--product-col", "SKU code", "--timestamp-col", "Purchased At",
                   "--rating-col", "Stars")
    assert done.returncode == 0, done.stderr
    read = read_all(kafka.bootstrap_servers, topic, 20)
    stamps = [json.loads(r.value)["timestamp"] for r in sorted(read, key=lambda r: r.offset)]
    assert (len(stamps), stamps) == (20, sorted(stamps))


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_flushes_what_is_in_flight_and_exits_zero(
    kafka, tmp_path: Path, workers: int
) -> None:
    """An endless run stopped by SIGTERM: everything it says it sent is on the topic."""
    topic = f"producer-sigterm-{workers}"
    ensure_topic(kafka.bootstrap_servers, topic, partitions=1)
    log_path = tmp_path / "producer.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "producer", "--bootstrap-servers", kafka.bootstrap_servers,
             "--topic", topic, "--rate", "2000", "--progress", "log", "--workers", str(workers)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_until(lambda: topic_size(kafka.bootstrap_servers, topic) >= 500, 60,
                       "the producer to put 500 records on the topic", interval=0.5)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    found = SUMMARY.search(log_path.read_text())
    assert found is not None, log_path.read_text()
    sent, acked, failed, unconfirmed = map(int, found.groups())
    on_topic = topic_size(kafka.bootstrap_servers, topic)
    assert (code, acked, failed, unconfirmed, on_topic) == (0, sent, 0, 0, sent)


def test_an_unreachable_broker_makes_the_cli_exit_one() -> None:
    (port,) = free_ports(1)
    started = time.monotonic()
    done = run_cli("--bootstrap-servers", f"127.0.0.1:{port}", "--events", "10",
                   "--connect-timeout", "3", timeout=60)
    assert (done.returncode, "no Kafka broker answered" in done.stderr) == (1, True), (
        f"{done.stderr} after {time.monotonic() - started:.0f} s"
    )
