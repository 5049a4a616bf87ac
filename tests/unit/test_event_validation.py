"""The shared validation rules (recsys_contract/validation.py, used by the API server's speed
layer) give every record the reason the streaming job's Spark checks give it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from producer.badevents import BAD_KINDS, make_bad_event
from producer.generator import GeneratorConfig, SalesGenerator
from producer.timefmt import parse_instant_ms
from recsys_contract.validation import Limits, classify_record
from spark_app import schema as S
from spark_app.stream.validate import classify

KAFKA_TIME = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
KAFKA_MS = parse_instant_ms("2026-11-27T10:00:00Z")
LIMITS = Limits(max_message_bytes=10_000, max_quantity=1000, max_future_seconds=3600,
                min_timestamp=datetime(2000, 1, 1, tzinfo=UTC), rating_range=(0.5, 5.0))
GOOD = {"event_id": "e1", "user_id": "u1", "product_id": "p1", "quantity": 2,
        "timestamp": "2026-11-27T09:00:00Z", "price": 9.5}


def records() -> list[bytes | None]:
    """Every bad kind the producer makes (ISO and epoch timestamps, several variants), valid
    events, and parse edge cases."""
    values: list[bytes | None] = []
    for epoch_ms in (False, True):
        generator = SalesGenerator(GeneratorConfig(
            seed=3, reference_now_ms=KAFKA_MS,
            timestamp_format="epoch_ms" if epoch_ms else "iso"))
        bases = list(generator.events(6))
        values += [json.dumps(base).encode() for base in bases]
        for kind in BAD_KINDS:
            for variant, base in enumerate(bases):
                values.append(make_bad_event(kind, base, variant=variant, now_ms=KAFKA_MS,
                                             epoch_ms=epoch_ms).value)
    edge = [
        None, b"", b"  ", b"null", b"\xff\xfe", b'{"a": NaN}',
        json.dumps(GOOD).encode() + b" x",
        b'{"user_id": "u2", ' + json.dumps(GOOD).encode()[1:],  # a duplicate key
        json.dumps({**GOOD, "quantity": 2**64}).encode(),
        json.dumps({**GOOD, "quantity": -(2**64)}).encode(),
        json.dumps({**GOOD, "quantity": True}).encode(),
        json.dumps({**GOOD, "timestamp": 2**63 - 1}).encode(),
        json.dumps({**GOOD, "timestamp": "2026-11-27"}).encode(),
        json.dumps({**GOOD, "timestamp": "2026-11-27T09:00:00"}).encode(),
        json.dumps({**GOOD, "timestamp": "2026-11-27 09:00:00.5+01:00"}).encode(),
        json.dumps({**GOOD, "price": None, "event_id": None}).encode(),
        json.dumps({**GOOD, "price": True}).encode(),
        json.dumps({**GOOD, "user_id": " \u00e9 "}).encode(),
        json.dumps({**GOOD, "extra": {"nested": [1, {"a": None}]}}).encode(),
    ]
    return values + edge


def test_the_servers_checks_give_every_record_the_jobs_reason(spark) -> None:
    values = records()
    raw = spark.createDataFrame(
        [(value, "sales", 0, offset, KAFKA_TIME) for offset, value in enumerate(values)],
        "value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    job = {row[S.KAFKA_OFFSET]: row[S.REASON] for row in classify(
        raw, max_message_bytes=LIMITS.max_message_bytes, max_quantity=LIMITS.max_quantity,
        max_future_seconds=LIMITS.max_future_seconds, min_timestamp=LIMITS.min_timestamp,
        rating_range=LIMITS.rating_range,
    ).select(S.KAFKA_OFFSET, S.REASON).collect()}
    server = {offset: classify_record(value, KAFKA_MS, LIMITS)[0]
              for offset, value in enumerate(values)}
    assert server == job
