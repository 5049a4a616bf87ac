"""Small helpers for integration tests that put records on a real topic."""

from __future__ import annotations

import json
from collections.abc import Iterable

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def send_all(bootstrap: str, topic: str, values: Iterable[bytes | str | dict],
             keys: Iterable[str] | None = None) -> int:
    """Send every value (dicts as JSON), wait for every acknowledgement; return the count."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = []
    try:
        key_iter = iter(keys) if keys is not None else None
        for value in values:
            if isinstance(value, dict):
                value = json.dumps(value)
            if isinstance(value, str):
                value = value.encode()
            key = next(key_iter).encode() if key_iter is not None else None
            futures.append(producer.send(topic, value=value, key=key))
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
    return len(futures)


def sales_event(i: int, users: int = 50, products: int = 20) -> dict:
    return {"event_id": f"e{i}", "user_id": f"u{i % users}", "product_id": f"p{(i * 7) % products}",
            "quantity": 1 + i % 3, "timestamp": "2026-11-01T09:00:00Z"}


def topic_values(bootstrap: str, topic: str, timeout: float = 120) -> list[bytes]:
    """Every record value the topic holds now, read from the beginning of each partition."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout:g} s")
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()
