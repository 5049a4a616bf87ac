"""Parsing and validation of raw Kafka records: every kind of bad event gets its reason."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_contract.events import QUARANTINE_COLUMNS
from spark_app import schema as S
from spark_app.errors import MissingColumnError, MissingJarError
from spark_app.schema import Reason
from spark_app.stream.store import QUARANTINED, VALID, staged_rows
from spark_app.stream.validate import (
    SALE_FIELDS_FUNCTION,
    Classifier,
    classify,
    parser_schema,
    register_sale_fields,
)

KAFKA_TIME = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
LIMITS = dict(
    max_message_bytes=300,
    max_quantity=1000,
    max_future_seconds=3600,
    min_timestamp=datetime(2000, 1, 1, tzinfo=UTC),
    rating_range=(0.5, 5.0),
)
GOOD = {"event_id": "e1", "user_id": "u1", "product_id": "p1", "quantity": 2,
        "timestamp": "2026-11-27T09:00:00Z", "price": 9.5}


def with_(**changes: object) -> str:
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...})


# (raw value, expected reason or None for valid)
CASES: list[tuple[str, str | None]] = [
    (with_(), None),
    (with_(timestamp=1795770000000), None),  # epoch milliseconds
    (with_(event_id=..., price=...), None),  # optional fields absent
    (with_(timestamp="2026-11-27T10:30:00+01:00"), None),  # an offset, 09:30 UTC
    ("x" * 400, Reason.OVERSIZED),
    ('{"user_id": "u1", ', Reason.MALFORMED_JSON),
    ("[1, 2, 3]", Reason.NOT_AN_OBJECT),
    ('"just a string"', Reason.NOT_AN_OBJECT),
    (with_(user_id=...), "missing_field:user_id"),
    (with_(product_id=None), "missing_field:product_id"),
    (with_(quantity=...), "missing_field:quantity"),
    (with_(timestamp=None), "missing_field:timestamp"),
    (with_(user_id=17), "wrong_type:user_id"),
    (with_(quantity="3"), "wrong_type:quantity"),
    (with_(quantity=2.5), "wrong_type:quantity"),
    (with_(timestamp=True), "wrong_type:timestamp"),
    (with_(event_id=5), "wrong_type:event_id"),
    (with_(product_id="  "), "empty_id:product_id"),
    (with_(quantity=0), Reason.QUANTITY_NOT_POSITIVE),
    (with_(quantity=-4), Reason.QUANTITY_NOT_POSITIVE),
    (with_(quantity=1001), Reason.QUANTITY_TOO_LARGE),
    (with_(timestamp="yesterday"), Reason.TIMESTAMP_UNPARSEABLE),
    (with_(timestamp="2026-13-45T00:00:00Z"), Reason.TIMESTAMP_UNPARSEABLE),
    (with_(timestamp="2027-11-27T10:00:00Z"), Reason.TIMESTAMP_IN_FUTURE),
    (with_(timestamp="1999-12-31T23:59:59Z"), Reason.TIMESTAMP_TOO_OLD),
    (with_(price=-1), Reason.PRICE_INVALID),
    (with_(price="cheap"), Reason.PRICE_INVALID),
]

# Defect 3 of issue 26: a price beyond a double, blank ids other than spaces, a blank event_id.
# (raw value, expected reason or None for valid)
GAP_CASES: list[tuple[str, str | None]] = [
    (with_(price=...)[:-1] + ', "price": 1e400}', Reason.PRICE_INVALID),
    (with_(price=...)[:-1] + ', "price": -1e400}', Reason.PRICE_INVALID),
    (with_(price=10**400), Reason.PRICE_INVALID),
    (with_(price=1.5e308), None),  # large, but a double
    (with_(event_id=""), "empty_id:event_id"),
    (with_(event_id=" \t\u3000"), "empty_id:event_id"),
    (with_(event_id=None), None),  # null: the default id, as if absent
    (with_(user_id="\u200b"), None),  # zero-width space: a format character, not blank
    (with_(user_id="\ufeff"), None),
    (with_(user_id="\u180e"), None),  # Mongolian vowel separator: whitespace until Unicode 6.3
    (with_(user_id="\u0000"), None),  # NUL is a character of an id
    (with_(user_id=" u1 "), None),  # spaces around an id are kept, not trimmed
    (with_(user_id="\ud800"), Reason.MALFORMED_JSON),  # a lone surrogate: no character
    (with_(product_id="p\udc00x"), Reason.MALFORMED_JSON),
    (with_(user_id="\U0001F600"), None),  # emoji: a surrogate pair in JSON's escapes
] + [
    (with_(user_id=blank), "empty_id:user_id") for blank in S.BLANK_CHARACTERS
] + [
    (with_(product_id=S.BLANK_CHARACTERS), "empty_id:product_id"),
]

# Edge cases of the JSON parse itself: (raw value, expected reason or None for valid)
PARSE_CASES: list[tuple[str | None, str | None]] = [
    (None, Reason.MALFORMED_JSON),  # a Kafka record without a value
    ("\n" + with_(), None),  # whitespace before the object is still JSON
    (with_() + " ", None),
    (with_() + " x", Reason.MALFORMED_JSON),  # anything after the object
    (with_() + with_(), Reason.MALFORMED_JSON),  # two events in one record: neither is lost
    ('{"user_id": "u1", ' + with_()[1:], Reason.MALFORMED_JSON),  # a duplicate key
    ("", Reason.MALFORMED_JSON),
    ("null", Reason.NOT_AN_OBJECT),
    (with_(quantity=2**64), Reason.QUANTITY_TOO_LARGE),  # an integer beyond 64 bits
    (with_(timestamp=2**63 - 1), Reason.TIMESTAMP_UNPARSEABLE),  # beyond year 9999
    (with_(user_id="u\u00e9", extra={"nested": [1, {"a": None}]}), None),
]


def kafka_records(spark, cases: list[tuple[str | None, str | None]]):
    """The cases' raw values as Kafka source rows, the offset being the case's position."""
    rows = [(value, "sales", 0, offset, KAFKA_TIME) for offset, (value, _) in enumerate(cases)]
    return spark.createDataFrame(
        rows, "value string, topic string, partition int, offset long, timestamp timestamp"
    )


@pytest.fixture(scope="module")
def raw(spark):
    return kafka_records(spark, CASES)


def test_every_kind_of_bad_event_gets_its_reason(spark, raw):
    actual = classify(raw, **LIMITS).select(S.KAFKA_OFFSET, S.REASON)
    expected = spark.createDataFrame(
        [(offset, reason) for offset, (_, reason) in enumerate(CASES)],
        f"{S.KAFKA_OFFSET} long, {S.REASON} string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_parse_edge_cases_get_their_reason(spark):
    actual = classify(kafka_records(spark, PARSE_CASES), **LIMITS).select(S.KAFKA_OFFSET, S.REASON)
    expected = spark.createDataFrame(
        [(offset, reason) for offset, (_, reason) in enumerate(PARSE_CASES)],
        f"{S.KAFKA_OFFSET} long, {S.REASON} string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


# Issue 23: the optional rating, a finite number within stream.min_rating..max_rating.
RATING_CASES: list[tuple[str, str | None]] = [
    (with_(rating=4.5), None),
    (with_(rating=0.5), None),  # the bounds are in the range
    (with_(rating=5), None),  # an integer is a number
    (with_(rating=None), None),  # null: no rating
    (with_(price=...)[:-1] + ', "rating": NaN}', Reason.MALFORMED_JSON),  # not JSON at all
    (with_(price=...)[:-1] + ', "rating": 1e400}', Reason.RATING_INVALID),
    (with_(rating=5.01), Reason.RATING_INVALID),
    (with_(rating=0.0), Reason.RATING_INVALID),
    (with_(rating="4.5"), Reason.RATING_INVALID),
    (with_(rating=[4]), Reason.RATING_INVALID),
]


def test_a_rating_is_carried_exactly_and_a_bad_one_is_quarantined(spark):
    raw = kafka_records(spark, RATING_CASES)
    got = classify(raw, **LIMITS).select(S.KAFKA_OFFSET, S.REASON, S.RATING).collect()
    assert sorted((r[0], r[1], r[2]) for r in got if r[1] is None) == [
        (0, None, 4.5), (1, None, 0.5), (2, None, 5.0), (3, None, None)]
    assert sorted((r[0], r[1]) for r in got) == [
        (offset, reason) for offset, (_, reason) in enumerate(RATING_CASES)]


def test_price_beyond_a_double_blank_ids_and_a_blank_event_id_are_quarantined(spark):
    limits = {**LIMITS, "max_message_bytes": 10_000}  # room for a 400-digit price
    actual = classify(kafka_records(spark, GAP_CASES), **limits).select(S.KAFKA_OFFSET, S.REASON)
    expected = spark.createDataFrame(
        [(offset, reason) for offset, (_, reason) in enumerate(GAP_CASES)],
        f"{S.KAFKA_OFFSET} long, {S.REASON} string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_blank_characters_are_pythons_whitespace():
    every = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert set(S.BLANK_CHARACTERS) == every


def test_one_classifier_serves_every_batch(spark):
    """The streaming job builds the expressions once: batch after batch, each gets its own."""
    classifier = Classifier(**LIMITS)
    first = classifier(kafka_records(spark, CASES))
    second = classifier(kafka_records(spark, PARSE_CASES))
    actual = first.select(S.KAFKA_OFFSET, S.REASON).unionByName(
        second.select((F.col(S.KAFKA_OFFSET) + 1000).alias(S.KAFKA_OFFSET), S.REASON)
    )
    expected = spark.createDataFrame(
        [(offset, reason) for offset, (_, reason) in enumerate(CASES)]
        + [(1000 + offset, reason) for offset, (_, reason) in enumerate(PARSE_CASES)],
        f"{S.KAFKA_OFFSET} long, {S.REASON} string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def stored_as(raw, status: str, schema):
    """The rows the event store (status valid) or the quarantine gets, in `schema`'s columns."""
    staged = staged_rows(classify(raw, **LIMITS), raw_max_bytes=10_000)
    return staged.where(F.col(S.STATUS) == status).select(*schema.fieldNames())


def test_valid_events_are_typed_and_complete(spark, raw):
    actual = stored_as(raw, VALID, S.EVENT_SCHEMA)
    t9 = datetime(2026, 11, 27, 9, 0, 0)
    expected = spark.createDataFrame(
        [
            ("e1", "u1", "p1", 2, t9, 9.5, "sales", 0, 0, None),
            ("e1", "u1", "p1", 2, t9, 9.5, "sales", 0, 1, None),
            ("sales-0-2", "u1", "p1", 2, t9, None, "sales", 0, 2, None),
            ("e1", "u1", "p1", 2, datetime(2026, 11, 27, 9, 30), 9.5, "sales", 0, 3, None),
        ],
        S.EVENT_SCHEMA,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_quarantine_keeps_raw_value_reason_and_position(spark, raw):
    bad = stored_as(raw, QUARANTINED, S.QUARANTINE_SCHEMA).where(f"{S.KAFKA_OFFSET} = 6")
    expected = spark.createDataFrame(
        [(bytearray(b"[1, 2, 3]"), 9, False, Reason.NOT_AN_OBJECT, "sales", 0, 6)],
        S.QUARANTINE_SCHEMA)
    assert_df_equality(bad, expected, ignore_nullable=True)


def test_quarantine_keeps_the_bytes_cut_to_the_cap_and_says_so(spark, tmp_path):
    """Defect 8 of issue 26: invalid UTF-8 and oversized values, byte for byte up to the cap,
    in a binary column that pandas reads from the whole folder."""
    values = [b'{"user_id": "\xff\xfe', b"\x00\x80" * 10, b"x" * 400, None]
    raw = spark.createDataFrame(
        [(v, "sales", 0, i, KAFKA_TIME) for i, v in enumerate(values)],
        "value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    staged = staged_rows(classify(raw, **LIMITS), raw_max_bytes=16)
    staged.where(F.col(S.STATUS) == QUARANTINED).write.parquet(str(tmp_path / "quarantine"))
    table = pd.read_parquet(tmp_path / "quarantine", columns=list(QUARANTINE_COLUMNS))
    rows = sorted(
        (r.kafka_offset, r.raw_value, r.raw_value_bytes if r.raw_value is not None else None,
         r.raw_value_truncated) for r in table.itertuples()
    )
    assert rows == [
        (0, values[0], len(values[0]), False),
        (1, values[1][:16], 20, True),
        (2, b"x" * 16, 400, True),
        (3, None, None, False),
    ]


def test_nothing_is_dropped(raw):
    counts = (stored_as(raw, VALID, S.EVENT_SCHEMA).count(),
              stored_as(raw, QUARANTINED, S.QUARANTINE_SCHEMA).count())
    assert counts == (4, len(CASES) - 4)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                 b"\xe2\x82"])
def test_invalid_utf8_is_malformed_json(spark, bad):
    """Invalid, overlong ('/' as C0 AF, which Jackson alone reads as '/'), surrogate, beyond
    U+10FFFF, cut short."""
    value = (b'{"user_id": "u' + bad + b'", "product_id": "p1", "quantity": 2, '
             b'"timestamp": 1795770000000}')
    raw = spark.createDataFrame(
        [(value, "sales", 0, 0, KAFKA_TIME)],
        "value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    assert classify(raw, **LIMITS).first()[S.REASON] == Reason.MALFORMED_JSON


def test_input_without_kafka_columns_is_a_named_error(spark):
    with pytest.raises(MissingColumnError, match="offset"):
        classify(spark.createDataFrame([("{}",)], "value string"), **LIMITS)


def test_a_parser_class_that_is_not_loaded_is_a_named_error(spark):
    with pytest.raises(MissingJarError, match="scripts/setup"):
        parser_schema(spark, "recsys.udf.NoSuchParser")


def generated_timestamps(n: int, seed: int) -> list[str]:
    """Timestamp texts in and around the parser's own ISO-8601 form: impossible dates, hours
    24 and seconds 60, 0-8 fraction digits, every offset form, no offset, a space for 'T'."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        year = rng.choice([rng.randint(0, 9999), rng.randint(1999, 2031), 2000, 2024, 1900])
        month, day = rng.randint(0, 13), rng.randint(0, 32)
        hour, minute, second = rng.randint(0, 24), rng.randint(0, 60), rng.randint(0, 60)
        digits = "".join(rng.choices("0123456789", k=rng.randint(0, 8)))
        fraction = rng.choice(["", "." + digits])
        sign, hours, minutes = rng.choice("+-"), rng.randint(0, 19), rng.choice([0, 30, 45, 59, 60])
        zone = rng.choice(
            ["Z", f"{sign}{hours:02d}:{minutes:02d}", f"{sign}{hours:02d}:00",
             "z", "", f"{sign}{hours:02d}{minutes:02d}", " UTC"]
        )
        sep = "T" if rng.random() < 0.9 else " "
        texts.append(
            f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}"
            f"{fraction}{zone}"
        )
    return texts


def test_the_parsers_own_timestamps_equal_sparks_cast(spark):
    """Where the parser reads a timestamp text itself, the instant is Spark's cast of it, in
    any session time zone; and it does read its forms (~20% of these texts), so the check
    checks something."""
    texts = generated_timestamps(20_000, seed=11)
    register_sale_fields(spark)
    rows = spark.createDataFrame([(json.dumps({"timestamp": t}),) for t in texts], "value string")
    parsed = rows.select(
        F.call_function(SALE_FIELDS_FUNCTION, F.col("value").cast("binary")).alias("p")
    ).select(
        F.col("p.timestamp_text").alias("text"),
        F.timestamp_micros("p.timestamp_micros").alias("own"),
        F.col("p.timestamp_text").try_cast("timestamp").alias("spark"),
    )
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "Asia/Kathmandu")  # +05:45, not UTC
    try:
        own = parsed.where(F.col("own").isNotNull())
        differ = own.where(~F.col("own").eqNullSafe(F.col("spark"))).limit(5).collect()
        read = own.count()
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    assert (differ, read > len(texts) // 10) == ([], True)
