"""Hostile input: valid ids that break naive CSV, HTML or plotting code, and records made to
break a naive parser. Each record is labelled with what the job must do with it.

`HOSTILE_IDS` are ids the job accepts (non-blank strings): quotes, commas, CR/LF, NUL,
backslashes, markup, emoji, right-to-left and zero-width characters, spaces around them. Every
exported CSV and the report must give each back exactly (docs/run-format.md).
`hostile_records()` builds the fuzz corpus of tests/integration/test_fuzz_kafka.py: more than 60
kinds of record (random bytes, invalid UTF-8, huge and deeply nested values, NaN/Infinity/1e400,
duplicate keys, every blank character as an id, ...), each with the reason the job must give it,
or None for a valid event (whose ids are then `HOSTILE_IDS`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from producer.badevents import DEFAULT_MAX_MESSAGE_BYTES
from producer.timefmt import format_timestamp
from recsys_contract.events import (
    BLANK_CHARACTERS,
    EVENT_ID,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    TIMESTAMP,
    USER_ID,
    Reason,
)

# Valid ids, each hostile to something downstream. The last is long but fits in a record.
HOSTILE_IDS: tuple[str, ...] = (
    'say "hi"',
    '"',
    '""',
    "a,b",
    'x,"y"\r\nz',
    "cr\ronly",
    "lf\nonly",
    "nul\x00mid",
    "\x00",
    '\x00"',
    '"\x00',
    "back\\slash",
    '\\"',
    "end\\",
    " lead",
    "trail ",
    " both ",
    "tab\tin",
    "<script>alert(1)</script>",
    "&amp; &lt;",
    "emoji\U0001f600",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "rtl\u202eevil",
    "\u05e2\u05d1\u05e8\u05d9\u05ea",
    "\u0645\u0631\u062d\u0628\u0627",
    "zw\u200bj",
    "\u200b",
    "\ufeffbom",
    "NA",
    "null",
    "nan",
    "#hash",
    "'single",
    "=1+1",
    "$x$",
    "$\\frac$",
    "\x7f\x01",
    "nel\x85",
    "u:p:",
    "long-" + "x" * 2000,
)


@dataclass(frozen=True)
class HostileRecord:
    """One record of the fuzz corpus: its kind, Kafka value (None: a record without one), and
    the quarantine reason the job must give it, or None if it is a valid event."""

    kind: str
    value: bytes | None
    expected_reason: str | None


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _event(base: dict[str, Any], **changes: Any) -> bytes:
    return _json({**base, **changes})


def _with_raw(base: dict[str, Any], field: str, raw: str) -> bytes:
    """The event with `field` written as the raw JSON text `raw` (which json.dumps cannot write:
    1e400, a lone surrogate escape, NaN...)."""
    event = {k: v for k, v in base.items() if k != field}
    return _json(event)[:-1] + f',"{field}":{raw}}}'.encode()


def _padded(base: dict[str, Any], size: int) -> bytes:
    """The event with a `pad` field that makes it exactly `size` bytes long."""
    return _event(base, pad="x" * (size - len(_event(base, pad=""))))


def valid_events(ids: tuple[str, ...] = HOSTILE_IDS, *, timestamp_ms: int,
                 per_user: int = 3) -> list[dict[str, Any]]:
    """Valid events whose users and products are `ids`: user i buys products i+1 .. i+per_user
    (so every id is a user and a product); event ids are hostile too."""
    stamp = format_timestamp(timestamp_ms)
    events = []
    for i, user in enumerate(ids):
        for k in range(1, per_user + 1):
            events.append({
                EVENT_ID: f'e"{i},{k}\r\n<{user[:8]}>',
                USER_ID: user,
                PRODUCT_ID: ids[(i + k) % len(ids)],
                QUANTITY: k,
                TIMESTAMP: stamp,
                PRICE: 1.25 * k,
            })
    return events


Kind = tuple[str, bytes | None, str | None]  # (kind, raw value or None, expected reason)


def _not_strict_json(base: dict[str, Any], text: bytes, rng: random.Random) -> list[Kind]:
    """Values that are not JSON, not strict JSON, or JSON but not an object."""
    return [
        # --- not JSON, or not strict JSON
        ("random_bytes", b"\xff" + rng.randbytes(63), Reason.MALFORMED_JSON),
        ("random_ascii", bytes(rng.choices(b"{}[]:,\"'\\ abc019", k=64)) + b"{",
         Reason.MALFORMED_JSON),
        ("empty_value", b"", Reason.MALFORMED_JSON),
        ("only_whitespace", b" \t\r\n ", Reason.MALFORMED_JSON),
        ("no_value", None, Reason.MALFORMED_JSON),
        ("invalid_utf8_in_id", text.replace(b'"u1"', b'"u\xff1"'), Reason.MALFORMED_JSON),
        ("overlong_utf8_in_id", text.replace(b'"u1"', b'"u\xc0\xaf"'), Reason.MALFORMED_JSON),
        ("surrogate_utf8_bytes_in_id", text.replace(b'"u1"', b'"u\xed\xa0\x80"'),
         Reason.MALFORMED_JSON),
        ("lone_high_surrogate_escape", text.replace(b'"u1"', b'"\\ud800"'),
         Reason.MALFORMED_JSON),
        ("lone_low_surrogate_escape", text.replace(b'"p1"', b'"p\\udc00"'),
         Reason.MALFORMED_JSON),
        ("truncated", text[: len(text) // 2], Reason.MALFORMED_JSON),
        ("trailing_text", text + b" trailing", Reason.MALFORMED_JSON),
        ("two_objects", text + text, Reason.MALFORMED_JSON),
        ("duplicate_key", text.replace(b'{"event_id"', b'{"user_id":"u0","event_id"'),
         Reason.MALFORMED_JSON),
        ("duplicate_nested_key", _with_raw(base, "extra", '{"a":1,"a":2}'),
         Reason.MALFORMED_JSON),
        ("single_quotes", text.replace(b'"', b"'"), Reason.MALFORMED_JSON),
        ("comment", b"/* sale */" + text, Reason.MALFORMED_JSON),
        ("nan_literal", _with_raw(base, PRICE, "NaN"), Reason.MALFORMED_JSON),
        ("infinity_literal", _with_raw(base, PRICE, "Infinity"), Reason.MALFORMED_JSON),
        ("minus_infinity_literal", _with_raw(base, PRICE, "-Infinity"), Reason.MALFORMED_JSON),
        ("leading_zeros", _with_raw(base, QUANTITY, "007"), Reason.MALFORMED_JSON),
        ("trailing_comma", text[:-1] + b",}", Reason.MALFORMED_JSON),
        ("unescaped_control_char", text.replace(b'"u1"', b'"u\x011"'), Reason.MALFORMED_JSON),
        ("deeply_nested", _with_raw(base, "extra", "[" * 4000 + "]" * 4000),
         Reason.MALFORMED_JSON),
        ("number_of_2000_digits", _with_raw(base, "extra", "9" * 2000), Reason.MALFORMED_JSON),
        # --- JSON, not an event
        ("array", _json([1, 2, 3]), Reason.NOT_AN_OBJECT),
        ("string", _json("u1 bought p1"), Reason.NOT_AN_OBJECT),
        ("number", b"42", Reason.NOT_AN_OBJECT),
        ("true", b"true", Reason.NOT_AN_OBJECT),
        ("null", b"null", Reason.NOT_AN_OBJECT),
    ]


def _field_kinds(base: dict[str, Any], ok_time: str, now_ms: int,
                 max_message_bytes: int) -> list[Kind]:
    """Events too large, or with a field missing, of the wrong type, blank or out of range."""
    return [
        # --- size
        ("huge", _event(base, pad="x" * 600_000), Reason.OVERSIZED),
        ("one_byte_too_many", _padded(base, max_message_bytes + 1), Reason.OVERSIZED),
        # --- fields
        ("user_id_null", _event(base, user_id=None), Reason.of(Reason.MISSING_FIELD, USER_ID)),
        ("product_id_absent", _json({k: v for k, v in base.items() if k != PRODUCT_ID}),
         Reason.of(Reason.MISSING_FIELD, PRODUCT_ID)),
        ("user_id_number", _event(base, user_id=17), Reason.of(Reason.WRONG_TYPE, USER_ID)),
        ("user_id_object", _event(base, user_id={"id": "u1"}),
         Reason.of(Reason.WRONG_TYPE, USER_ID)),
        ("product_id_array", _event(base, product_id=["p1"]),
         Reason.of(Reason.WRONG_TYPE, PRODUCT_ID)),
        ("product_id_bool", _event(base, product_id=True),
         Reason.of(Reason.WRONG_TYPE, PRODUCT_ID)),
        ("event_id_number", _event(base, event_id=5), Reason.of(Reason.WRONG_TYPE, EVENT_ID)),
        ("event_id_empty", _event(base, event_id=""), Reason.of(Reason.EMPTY_ID, EVENT_ID)),
        ("event_id_blank", _event(base, event_id="\u3000\t"),
         Reason.of(Reason.EMPTY_ID, EVENT_ID)),
        ("product_id_every_blank", _event(base, product_id=BLANK_CHARACTERS),
         Reason.of(Reason.EMPTY_ID, PRODUCT_ID)),
        ("quantity_string", _event(base, quantity="3"), Reason.of(Reason.WRONG_TYPE, QUANTITY)),
        ("quantity_float", _with_raw(base, QUANTITY, "1e2"),
         Reason.of(Reason.WRONG_TYPE, QUANTITY)),
        ("quantity_bool", _event(base, quantity=True), Reason.of(Reason.WRONG_TYPE, QUANTITY)),
        ("quantity_minus_zero", _with_raw(base, QUANTITY, "-0"), Reason.QUANTITY_NOT_POSITIVE),
        ("quantity_2_pow_64", _event(base, quantity=2**64), Reason.QUANTITY_TOO_LARGE),
        ("quantity_400_digits", _with_raw(base, QUANTITY, "9" * 400), Reason.QUANTITY_TOO_LARGE),
        ("timestamp_1e400", _with_raw(base, TIMESTAMP, "1e400"),
         Reason.of(Reason.WRONG_TYPE, TIMESTAMP)),
        ("timestamp_2_pow_63", _event(base, timestamp=2**63), Reason.TIMESTAMP_UNPARSEABLE),
        ("timestamp_empty", _event(base, timestamp=""), Reason.TIMESTAMP_UNPARSEABLE),
        ("timestamp_feb_30", _event(base, timestamp="2026-02-30T00:00:00Z"),
         Reason.TIMESTAMP_UNPARSEABLE),
        ("timestamp_array", _event(base, timestamp=[ok_time]),
         Reason.of(Reason.WRONG_TYPE, TIMESTAMP)),
        ("timestamp_too_old", _event(base, timestamp="1999-12-31T23:59:59Z"),
         Reason.TIMESTAMP_TOO_OLD),
        ("timestamp_next_year", _event(base, timestamp=format_timestamp(now_ms + 365 * 86_400_000)),
         Reason.TIMESTAMP_IN_FUTURE),
        ("price_1e400", _with_raw(base, PRICE, "1e400"), Reason.PRICE_INVALID),
        ("price_minus_1e400", _with_raw(base, PRICE, "-1e400"), Reason.PRICE_INVALID),
        ("price_400_digits", _with_raw(base, PRICE, "9" * 400), Reason.PRICE_INVALID),
        ("price_string", _event(base, price="cheap"), Reason.PRICE_INVALID),
        ("price_negative", _event(base, price=-0.01), Reason.PRICE_INVALID),
        ("rating_string", _event(base, rating="5 stars"), Reason.RATING_INVALID),
        ("rating_1e400", _with_raw(base, "rating", "1e400"), Reason.RATING_INVALID),
        ("rating_above_range", _event(base, rating=5.5), Reason.RATING_INVALID),
        ("rating_negative", _event(base, rating=-0.5), Reason.RATING_INVALID),
    ]


def _odd_but_valid(base: dict[str, Any], ok_time: str, max_message_bytes: int) -> list[Kind]:
    """Records the job must store although they look suspicious."""
    return [
        # --- valid, though odd
        ("exactly_max_bytes", _padded({**base, EVENT_ID: "fuzz-max"}, max_message_bytes),
         None),
        ("nested_50_levels", _with_raw({**base, EVENT_ID: "fuzz-nested"}, "extra",
                                       "[" * 50 + "]" * 50), None),
        ("utf8_bom", b"\xef\xbb\xbf" + _event(base, event_id="fuzz-bom"), None),
        ("price_null", _event(base, event_id="fuzz-nullprice", price=None), None),
        # Spark's cast reads a timestamp text with control characters around it
        ("timestamp_with_nul", _event(base, event_id="fuzz-nultime", timestamp=ok_time + "\x00"),
         None),
        ("hostile_extra_fields", _json({**base, EVENT_ID: "fuzz-extra", "\x00k": "v\x00",
                                        "\U0001f600": ["<script>", {"\u202e": None}]}), None),
    ]


def hostile_records(*, now_ms: int, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                    seed: int = 26) -> list[HostileRecord]:
    """The fuzz corpus: one record of each hostile kind (more than 60), each labelled with the
    reason the job gives it with the default limits (stream.max_message_bytes as given,
    max_quantity 1000, min_timestamp 2000-01-01, max_future_seconds 3600) when it is sent at
    about `now_ms`; then the valid events of `valid_events` (kind `valid_ids`)."""
    rng = random.Random(seed)
    ok_time = format_timestamp(now_ms - 86_400_000)
    base: dict[str, Any] = {EVENT_ID: "fuzz", USER_ID: "u1", PRODUCT_ID: "p1", QUANTITY: 2,
                            TIMESTAMP: ok_time, PRICE: 9.5}
    text = _json(base)
    kinds = [*_not_strict_json(base, text, rng),
             *_field_kinds(base, ok_time, now_ms, max_message_bytes),
             *_odd_but_valid(base, ok_time, max_message_bytes)]
    kinds += [
        (f"user_id_blank_U+{ord(c):04X}", _event(base, user_id=c),
         Reason.of(Reason.EMPTY_ID, USER_ID))
        for c in BLANK_CHARACTERS
    ]
    records = [HostileRecord(kind, value, reason) for kind, value, reason in kinds]
    records += [HostileRecord("valid_ids", _json(e), None)
                for e in valid_events(timestamp_ms=now_ms - 86_400_000)]
    return records


def corpus_ids(records: list[HostileRecord]) -> tuple[set[str], set[str], set[str]]:
    """(event ids, user ids, product ids) of the corpus's valid events (None for the default
    event id of an event sent without one)."""
    events = [json.loads(r.value.lstrip(b"\xef\xbb\xbf")) for r in records
              if r.expected_reason is None and r.value is not None]
    return ({e.get(EVENT_ID) for e in events}, {e[USER_ID] for e in events},
            {e[PRODUCT_ID] for e in events})
