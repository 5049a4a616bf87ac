"""The job's validation rules as plain Python: a Kafka record's quarantine reason, or None.

The streaming job checks records with Spark column expressions (spark_app/stream/validate.py);
the API server's speed layer reads the same topic without Spark and must skip the records the
job quarantines, with the same reason codes. The checks and their order are the job's (README,
"Validation"); tests/unit/test_event_validation.py gives both every kind of bad event the
producer makes (producer/badevents.py) and checks that they agree.

Where the two may differ: a timestamp text that is not exactly `YYYY-MM-DDTHH:MM:SS[.f]` with
`Z` or an offset goes to Spark's lenient cast in the job and to `datetime.fromisoformat` here
(both read the usual ISO-8601 forms, rare spellings may be judged differently); invalid UTF-8
inside a field the job does not read is malformed here. The job's quarantine is the record.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from recsys_contract.config import StreamConfig
from recsys_contract.events import (
    EVENT_ID,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATING,
    REQUIRED_FIELDS,
    TIMESTAMP,
    USER_ID,
    Reason,
    is_blank,
)

# Epoch milliseconds a Spark timestamp holds (years 0001-9999), as in the job.
MILLIS_RANGE = (-62_135_596_800_000, 253_402_300_799_999)
_INT64 = (-(2**63), 2**63 - 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")  # the job reads only texts that start so


@dataclass(frozen=True)
class Limits:
    """The job's validation limits (conf `stream.*`)."""

    max_message_bytes: int
    max_quantity: int
    max_future_seconds: int
    min_timestamp: datetime  # aware; a naive one is taken as UTC
    rating_range: tuple[float, float]  # the optional rating's [min, max]

    @classmethod
    def from_settings(cls, stream: StreamConfig) -> Limits:
        """Limits from the `stream.*` settings."""
        return cls(stream.max_message_bytes, stream.max_quantity, stream.max_future_seconds,
                   stream.min_instant, (stream.min_rating, stream.max_rating))


class _Malformed(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Malformed("duplicate key")
    return obj


def _no_constant(name: str) -> Any:
    raise _Malformed(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def parse_json(value: bytes | None) -> Any:
    """The JSON value of a record, strictly: UTF-8, one value and only whitespace around it,
    no duplicate key at any depth, no NaN or Infinity. Raises ValueError otherwise."""
    if value is None:
        raise _Malformed("no value")
    text = value.decode("utf-8")  # UnicodeDecodeError is a ValueError
    parsed = _DECODER.decode(text)  # raises on trailing data and empty text
    if isinstance(parsed, dict):
        for name in (USER_ID, PRODUCT_ID, EVENT_ID, TIMESTAMP):
            if isinstance(parsed.get(name), str):
                parsed[name].encode("utf-8")  # a lone surrogate escape ("\\ud800") raises
    return parsed


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(number: int | float) -> bool:
    """Whether a JSON number is a finite double (1e400 or a 400-digit integer is not)."""
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _absent(event: dict[str, Any], name: str) -> bool:
    return event.get(name) is None


def _micros(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # the job's session time zone is UTC
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def event_time_micros(timestamp: Any) -> int | None:
    """A valid event's `timestamp` in microseconds since the epoch, or None if unparseable."""
    if _is_int(timestamp):
        return timestamp * 1000 if MILLIS_RANGE[0] <= timestamp <= MILLIS_RANGE[1] else None
    if not isinstance(timestamp, str) or not _DATE_PREFIX.match(timestamp):
        return None
    try:
        return _micros(datetime.fromisoformat(timestamp))
    except (ValueError, OverflowError):
        return None


def validate_event(event: Any, kafka_timestamp_ms: int, limits: Limits) -> str | None:
    """The quarantine reason of a parsed record (`code` or `code:field`), or None if valid.

    `kafka_timestamp_ms`: the record's Kafka timestamp, against which "in the future" is
    judged (as the job does, so a replay judges a record the same way).
    """
    if not isinstance(event, dict):
        return Reason.NOT_AN_OBJECT
    for name in REQUIRED_FIELDS:
        if _absent(event, name):
            return Reason.of(Reason.MISSING_FIELD, name)
    for name in (USER_ID, PRODUCT_ID):
        if not isinstance(event[name], str):
            return Reason.of(Reason.WRONG_TYPE, name)
    if not _absent(event, EVENT_ID) and not isinstance(event[EVENT_ID], str):
        return Reason.of(Reason.WRONG_TYPE, EVENT_ID)
    if not _is_int(event[QUANTITY]):
        return Reason.of(Reason.WRONG_TYPE, QUANTITY)
    if not (isinstance(event[TIMESTAMP], str) or _is_int(event[TIMESTAMP])):
        return Reason.of(Reason.WRONG_TYPE, TIMESTAMP)
    for name in (USER_ID, PRODUCT_ID, EVENT_ID):
        if isinstance(event.get(name), str) and is_blank(event[name]):
            return Reason.of(Reason.EMPTY_ID, name)
    quantity = event[QUANTITY]
    if not _INT64[0] <= quantity <= _INT64[1]:
        return Reason.QUANTITY_TOO_LARGE  # the job reads no integer beyond 64 bits
    if quantity <= 0:
        return Reason.QUANTITY_NOT_POSITIVE
    if quantity > limits.max_quantity:
        return Reason.QUANTITY_TOO_LARGE
    micros = event_time_micros(event[TIMESTAMP])
    if micros is None:
        return Reason.TIMESTAMP_UNPARSEABLE
    if micros < _micros(limits.min_timestamp):
        return Reason.TIMESTAMP_TOO_OLD
    if micros > (kafka_timestamp_ms + limits.max_future_seconds * 1000) * 1000:
        return Reason.TIMESTAMP_IN_FUTURE
    if not _absent(event, PRICE):
        price = event[PRICE]
        if not _is_number(price) or price < 0 or not _finite(price):
            return Reason.PRICE_INVALID
    if not _absent(event, RATING):
        rating = event[RATING]
        low, high = limits.rating_range
        if not _is_number(rating) or not _finite(rating) or not low <= rating <= high:
            return Reason.RATING_INVALID
    return None


def classify_record(
    value: bytes | None, kafka_timestamp_ms: int, limits: Limits
) -> tuple[str | None, dict[str, Any] | None]:
    """(reason, None) for a record the job quarantines, (None, event) for a valid one."""
    if value is not None and len(value) > limits.max_message_bytes:
        return Reason.OVERSIZED, None
    try:
        event = parse_json(value)
    except ValueError:
        return Reason.MALFORMED_JSON, None
    reason = validate_event(event, kafka_timestamp_ms, limits)
    return (reason, None) if reason else (None, event)
