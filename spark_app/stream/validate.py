"""Parse raw Kafka records into sales events, and say why each bad one is bad.

Pure `DataFrame -> DataFrame` functions: they take the Kafka source's columns (value, topic,
partition, offset) and plain limits, so they run the same on a static DataFrame in a test.
JSON is parsed into a Spark VARIANT, which keeps each field's JSON type: a quantity sent as
the string "3" is told apart from the integer 3, and a JSON null from a missing field.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_app import schema as S
from spark_app.errors import MissingColumnError
from spark_app.schema import Reason

KAFKA_SOURCE_COLUMNS = ("value", "topic", "partition", "offset", "timestamp")
_VARIANT = "_v"
_INTEGER_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")
_ISO_PREFIX = r"^\d{4}-\d{2}-\d{2}"  # Spark also casts words like 'today'; events may not
_FIELDS = (*S.REQUIRED_FIELDS, *S.OPTIONAL_FIELDS)


# Each field is extracted from the parsed object once (`_v_<field>`, a VARIANT) and its JSON
# type named once (`_t_<field>`: STRING, BIGINT, DECIMAL(2,1), DOUBLE, VOID for null...), in
# projections of their own, so the checks below reuse them instead of re-parsing.
def _v(name: str) -> Column:
    return F.col(f"_v_{name}")


def _t(name: str) -> Column:
    return F.col(f"_t_{name}")


def _get(name: str, type_name: str) -> Column:
    return F.try_variant_get(_v(name), "$", type_name)


def _absent(name: str) -> Column:
    return _v(name).isNull() | (_t(name) == "VOID")


def _is_number(name: str) -> Column:
    return _t(name).isin(*_INTEGER_TYPES, "DOUBLE", "FLOAT") | _t(name).startswith("DECIMAL")


# Typed scalars, also extracted once (each try_variant_get costs about as much as the parse).
_QUANTITY = "_quantity"
_PRICE = "_price"
_TS_TEXT = "_ts_text"
_TS_MILLIS = "_ts_millis"


def _event_time() -> Column:
    """`timestamp` as a Spark timestamp: ISO-8601 text, or epoch milliseconds as an integer."""
    text = F.col(_TS_TEXT)
    return (
        F.when(_t(S.TIMESTAMP).isin(*_INTEGER_TYPES), F.timestamp_millis(F.col(_TS_MILLIS)))
        .when((_t(S.TIMESTAMP) == "STRING") & text.rlike(_ISO_PREFIX), text.try_cast("timestamp"))
        .otherwise(F.lit(None).cast("timestamp"))
    )


def _reason(
    max_message_bytes: int,
    max_quantity: int,
    max_future_seconds: int,
    min_timestamp: datetime,
) -> Column:
    """The first thing wrong with a record (checks in a fixed order), or null if valid.

    "Far future" is judged against the record's Kafka timestamp, not the wall clock, so a
    batch replayed after a crash classifies every record exactly as the first time.
    """
    quantity = F.col(_QUANTITY)
    price = F.col(_PRICE)
    event_time = F.col(S.EVENT_TIME)
    latest_allowed = F.col(S.KAFKA_TIMESTAMP) + F.make_dt_interval(
        secs=F.lit(max_future_seconds)
    )
    checks: list[tuple[Column, Column]] = [
        (F.coalesce(F.octet_length(F.col("value")), F.lit(0)) > max_message_bytes,
         F.lit(Reason.OVERSIZED)),
        (F.col(_VARIANT).isNull(), F.lit(Reason.MALFORMED_JSON)),
        (~F.ltrim(F.col("value")).startswith("{"), F.lit(Reason.NOT_AN_OBJECT)),
    ]
    checks += [
        (_absent(name), F.lit(Reason.of(Reason.MISSING_FIELD, name)))
        for name in S.REQUIRED_FIELDS
    ]
    checks += [
        (_t(name) != "STRING", F.lit(Reason.of(Reason.WRONG_TYPE, name)))
        for name in (S.USER_ID, S.PRODUCT_ID)
    ]
    checks += [
        (~_absent(S.EVENT_ID) & (_t(S.EVENT_ID) != "STRING"),
         F.lit(Reason.of(Reason.WRONG_TYPE, S.EVENT_ID))),
        (~_t(S.QUANTITY).isin(*_INTEGER_TYPES), F.lit(Reason.of(Reason.WRONG_TYPE, S.QUANTITY))),
        (~_t(S.TIMESTAMP).isin("STRING", *_INTEGER_TYPES),
         F.lit(Reason.of(Reason.WRONG_TYPE, S.TIMESTAMP))),
    ]
    checks += [
        (F.trim(F.col(name)) == "", F.lit(Reason.of(Reason.EMPTY_ID, name)))
        for name in (S.USER_ID, S.PRODUCT_ID)
    ]
    checks += [
        (quantity.isNull(), F.lit(Reason.QUANTITY_TOO_LARGE)),  # an integer beyond 64 bits
        (quantity <= 0, F.lit(Reason.QUANTITY_NOT_POSITIVE)),
        (quantity > max_quantity, F.lit(Reason.QUANTITY_TOO_LARGE)),
        (event_time.isNull(), F.lit(Reason.TIMESTAMP_UNPARSEABLE)),
        (event_time < F.lit(min_timestamp).cast("timestamp"), F.lit(Reason.TIMESTAMP_TOO_OLD)),
        (event_time > latest_allowed, F.lit(Reason.TIMESTAMP_IN_FUTURE)),
        (~_absent(S.PRICE) & (~_is_number(S.PRICE) | (price < 0) | F.isnan(price)),
         F.lit(Reason.PRICE_INVALID)),
    ]
    reason = F.lit(None).cast("string")
    for condition, code in reversed(checks):
        reason = F.when(condition, code).otherwise(reason)
    return reason


def require_columns(df: DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Raise MissingColumnError naming the absent columns of `df`."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnError(f"{what} lacks columns {missing}; it has {df.columns}")


def classify(
    raw: DataFrame,
    *,
    max_message_bytes: int,
    max_quantity: int,
    max_future_seconds: int,
    min_timestamp: datetime,
) -> DataFrame:
    """Kafka records -> one row each with the event's fields, `reason` (null if valid), source.

    `raw` has the Kafka source columns: value (binary or string), topic, partition, offset,
    timestamp.
    """
    require_columns(raw, KAFKA_SOURCE_COLUMNS, "the Kafka input")
    text = F.col("value").cast("string")
    # Oversized values are not parsed at all: a huge message must not cost a huge parse.
    parsed = raw.select(
        text.alias("value"),
        F.when(F.octet_length(text) <= max_message_bytes, F.try_parse_json(text)).alias(
            _VARIANT
        ),
        F.col("topic").alias(S.KAFKA_TOPIC),
        F.col("partition").cast("int").alias(S.KAFKA_PARTITION),
        F.col("offset").cast("long").alias(S.KAFKA_OFFSET),
        F.col("timestamp").cast("timestamp").alias(S.KAFKA_TIMESTAMP),
    )

    fields = parsed.select(
        "*", *[F.variant_get(F.col(_VARIANT), f"$.{name}", "variant").alias(f"_v_{name}")
               for name in _FIELDS]
    )
    typed = fields.select(
        "*",
        *[F.schema_of_variant(_v(name)).alias(f"_t_{name}") for name in _FIELDS],
        _get(S.QUANTITY, "bigint").alias(_QUANTITY),
        _get(S.PRICE, "double").alias(_PRICE),
        F.when(_v(S.TIMESTAMP).isNotNull(), _get(S.TIMESTAMP, "string")).alias(_TS_TEXT),
        _get(S.TIMESTAMP, "bigint").alias(_TS_MILLIS),
    )
    with_fields = typed.select(
        "*",
        F.coalesce(
            _get(S.EVENT_ID, "string"),
            F.concat_ws("-", S.KAFKA_TOPIC, S.KAFKA_PARTITION, S.KAFKA_OFFSET),
        ).alias(S.EVENT_ID),
        _get(S.USER_ID, "string").alias(S.USER_ID),
        _get(S.PRODUCT_ID, "string").alias(S.PRODUCT_ID),
        F.when(F.col(_QUANTITY).between(-(2**31), 2**31 - 1), F.col(_QUANTITY))
        .cast("int").alias(S.QUANTITY),
        _event_time().alias(S.EVENT_TIME),
        F.col(_PRICE).alias(S.PRICE),
    )
    scratch = [_VARIANT, S.KAFKA_TIMESTAMP, _QUANTITY, _PRICE, _TS_TEXT, _TS_MILLIS,
               *[f"_{k}_{n}" for k in "vt" for n in _FIELDS]]
    return with_fields.withColumn(
        S.REASON,
        _reason(max_message_bytes, max_quantity, max_future_seconds, min_timestamp),
    ).drop(*scratch)


def valid_events(classified: DataFrame, keep: tuple[str, ...] = ()) -> DataFrame:
    """The valid rows of `classify`'s output, in the event store's schema (plus `keep`)."""
    return classified.where(F.col(S.REASON).isNull()).select(
        *[F.col(field.name).cast(field.dataType) for field in S.EVENT_SCHEMA.fields], *keep
    )


def quarantined(classified: DataFrame) -> DataFrame:
    """The bad rows of `classify`'s output: raw value, reason and Kafka position."""
    return classified.where(F.col(S.REASON).isNotNull()).select(
        F.col("value").alias(S.RAW_VALUE),
        *[F.col(field.name) for field in S.QUARANTINE_SCHEMA.fields[1:]],
    )
