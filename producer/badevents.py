"""Malformed sales events, one kind per quarantine reason, each labelled with the reason expected.

Every bad event is built from a good event and broken in exactly one way, so the job's
validation must give exactly `expected_reason` (a `recsys_contract.events.Reason` code, with the
field appended as `code:field` where the defect is about one field: missing_field, empty_id,
wrong_type). Only `value` goes to Kafka; the label stays with the producer and the tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from producer.timefmt import MS_PER_DAY, format_timestamp, parse_instant_ms
from recsys_contract.events import (
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATING,
    REQUIRED_FIELDS,
    TIMESTAMP,
    USER_ID,
    Reason,
)

DEFAULT_MAX_MESSAGE_BYTES = 10_000  # conf/defaults.yaml stream.max_message_bytes
_OLD_ISO = ("1999-12-31T23:59:59.000Z", "1970-01-02T00:00:00.000Z")
_UNPARSEABLE = ("yesterday", "2025-13-45T25:61:00Z", "12/31/2025 10:00", "not a time")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class BadEvent:
    """A malformed Kafka value, its key, and the quarantine reason the job must give it."""

    kind: str
    key: bytes | None
    value: bytes
    expected_reason: str


def _encode(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode("utf-8")


def _key_of(event: dict[str, Any]) -> bytes | None:
    user = event.get(USER_ID)
    return user.encode("utf-8") if isinstance(user, str) and user.strip() else None


def _ts(ms: int, epoch_ms: bool) -> str | int:
    return ms if epoch_ms else format_timestamp(ms)


@dataclass(frozen=True)
class _Ctx:
    base: dict[str, Any]
    variant: int
    now_ms: int
    epoch_ms: bool
    max_message_bytes: int


def _oversized(c: _Ctx) -> tuple[Any, str]:
    event = dict(c.base)
    event["comment"] = "x" * (c.max_message_bytes + 100)
    return event, Reason.OVERSIZED


def _malformed_json(c: _Ctx) -> tuple[Any, str]:
    text = _encode(c.base)
    if c.variant % 2 == 0:
        return text[: len(text) // 2], Reason.MALFORMED_JSON  # truncated mid-object
    return b"user=" + c.base[USER_ID].encode() + b";product=" + c.base[PRODUCT_ID].encode(), (
        Reason.MALFORMED_JSON
    )


def _not_an_object(c: _Ctx) -> tuple[Any, str]:
    choices: tuple[Any, ...] = (
        [c.base[USER_ID], c.base[PRODUCT_ID], c.base[QUANTITY], c.base[TIMESTAMP]],
        c.base[QUANTITY],
        f"{c.base[USER_ID]} bought {c.base[PRODUCT_ID]}",
    )
    return choices[c.variant % len(choices)], Reason.NOT_AN_OBJECT


def _missing_field(c: _Ctx) -> tuple[Any, str]:
    field = REQUIRED_FIELDS[c.variant % len(REQUIRED_FIELDS)]
    event = {k: v for k, v in c.base.items() if k != field}
    return event, Reason.of(Reason.MISSING_FIELD, field)


def _null_field(c: _Ctx) -> tuple[Any, str]:
    field = REQUIRED_FIELDS[c.variant % len(REQUIRED_FIELDS)]
    return {**c.base, field: None}, Reason.of(Reason.MISSING_FIELD, field)


def _empty_id(c: _Ctx) -> tuple[Any, str]:
    field = (USER_ID, PRODUCT_ID)[c.variant % 2]
    blank = ("", "   ", "\t", "\u3000")[(c.variant // 2) % 4]  # U+3000: ideographic space
    return {**c.base, field: blank}, Reason.of(Reason.EMPTY_ID, field)


def _wrong_type(c: _Ctx) -> tuple[Any, str]:
    choices: tuple[tuple[str, Any], ...] = (
        (QUANTITY, str(c.base[QUANTITY])),  # "3": a string, not a JSON integer
        (QUANTITY, c.base[QUANTITY] + 0.5),  # 2.5: not an integer
        (USER_ID, int("".join(ch for ch in c.base[USER_ID] if ch.isdigit()) or 0)),  # a number
        (PRODUCT_ID, [c.base[PRODUCT_ID]]),  # an array, not a string
    )
    field, value = choices[c.variant % len(choices)]
    return {**c.base, field: value}, Reason.of(Reason.WRONG_TYPE, field)


def _quantity_not_positive(c: _Ctx) -> tuple[Any, str]:
    return {**c.base, QUANTITY: (0, -1, -3)[c.variant % 3]}, Reason.QUANTITY_NOT_POSITIVE


def _quantity_too_large(c: _Ctx) -> tuple[Any, str]:
    return {**c.base, QUANTITY: (1001, 5000, 1_000_000)[c.variant % 3]}, Reason.QUANTITY_TOO_LARGE


def _timestamp_unparseable(c: _Ctx) -> tuple[Any, str]:
    bad = _UNPARSEABLE[c.variant % len(_UNPARSEABLE)]
    return {**c.base, TIMESTAMP: bad}, Reason.TIMESTAMP_UNPARSEABLE


def _timestamp_in_future(c: _Ctx) -> tuple[Any, str]:
    ms = c.now_ms + 365 * MS_PER_DAY + c.variant % 1000
    return {**c.base, TIMESTAMP: _ts(ms, c.epoch_ms)}, Reason.TIMESTAMP_IN_FUTURE


def _timestamp_too_old(c: _Ctx) -> tuple[Any, str]:
    ms = parse_instant_ms(_OLD_ISO[c.variant % len(_OLD_ISO)])
    return {**c.base, TIMESTAMP: _ts(ms, c.epoch_ms)}, Reason.TIMESTAMP_TOO_OLD


def _price_invalid(c: _Ctx) -> tuple[Any, str]:
    return {**c.base, PRICE: (-5.0, -0.01)[c.variant % 2]}, Reason.PRICE_INVALID


def _rating_invalid(c: _Ctx) -> tuple[Any, str]:
    # a string, beyond the default range (stream.max_rating 5), below it, a boolean
    return {**c.base, RATING: ("4.5", 99.0, -1.0, True)[c.variant % 4]}, Reason.RATING_INVALID


_BUILDERS: dict[str, Callable[[_Ctx], tuple[Any, str]]] = {
    "oversized": _oversized,
    "malformed_json": _malformed_json,
    "not_an_object": _not_an_object,
    "missing_field": _missing_field,
    "null_field": _null_field,
    "empty_id": _empty_id,
    "wrong_type": _wrong_type,
    "quantity_not_positive": _quantity_not_positive,
    "quantity_too_large": _quantity_too_large,
    "timestamp_unparseable": _timestamp_unparseable,
    "timestamp_in_future": _timestamp_in_future,
    "timestamp_too_old": _timestamp_too_old,
    "price_invalid": _price_invalid,
    "rating_invalid": _rating_invalid,
}
# The kinds of breakage, in the round-robin order used by the generator.
BAD_KINDS: tuple[str, ...] = tuple(_BUILDERS)


def make_bad_event(
    kind: str,
    base: dict[str, Any],
    *,
    variant: int = 0,
    now_ms: int,
    epoch_ms: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> BadEvent:
    """Break the good event `base` in the way `kind` names; `variant` picks among sub-forms.

    `now_ms` anchors the far-future timestamp (now + 1 year); `epoch_ms` writes timestamps
    as epoch milliseconds instead of ISO strings, like the good events of the same stream.
    """
    try:
        builder = _BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown bad-event kind {kind!r}; expected one of {BAD_KINDS}") from None
    payload, reason = builder(_Ctx(base, variant, now_ms, epoch_ms, max_message_bytes))
    if isinstance(payload, bytes):
        return BadEvent(kind, _key_of(base), payload, reason)
    key = _key_of(payload) if isinstance(payload, dict) else _key_of(base)
    return BadEvent(kind, key, _encode(payload), reason)
