"""Parse raw Kafka records into sales events, and say why each bad one is bad.

Pure `DataFrame -> DataFrame` functions: they take the Kafka source's columns (value, topic,
partition, offset) and plain limits, so they run the same on a static DataFrame in a test.

Each record's JSON is read once, by the project's Spark SQL function `SaleFields` (Java, in
jvm/udf/: a streaming parse with the Jackson library Spark ships). It returns each field's JSON
type beside its value, so a quantity sent as the string "3" is told apart from the integer 3,
and a JSON null from a missing field. The checks that name a reason are the Spark column
expressions below. (Building a Spark VARIANT and extracting each field from it did the same,
more slowly: benchmarks/DECISIONS.md, row `record parser in Java`.)
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_app import schema as S
from spark_app.errors import MissingColumnError, MissingJarError
from spark_app.schema import Reason

KAFKA_SOURCE_COLUMNS = ("value", "topic", "partition", "offset", "timestamp")
_ISO_PREFIX = r"^\d{4}-\d{2}-\d{2}"  # Spark also casts words like 'today'; events may not
# Epoch milliseconds a Spark timestamp holds (years 0001-9999); beyond, converting overflows
# and would fail the whole batch, so such a value is unparseable instead.
_MILLIS_RANGE = (-62_135_596_800_000, 253_402_300_799_999)

# The parser: a Java class in the jar scripts/setup builds (.deps/spark-jars/recsys-udf.jar).
SALE_FIELDS_CLASS = "recsys.udf.SaleFields"
SALE_FIELDS_FUNCTION = "recsys_sale_fields"
# Its `json` field (the record's shape) and `<field>_type` fields (JSON types) take these values.
_MALFORMED = "malformed"
_NOT_AN_OBJECT = "not_an_object"
_STRING, _INTEGER, _FLOAT, _NULL = "string", "integer", "float", "null"
_PARSED = "_parsed"  # scratch struct column: the parser's output


def parser_schema(spark: SparkSession, class_name: str = SALE_FIELDS_CLASS) -> str:
    """The struct the parser class returns (its SCHEMA, Spark DDL), read from the JVM.

    Raises MissingJarError, naming the fix, when the class is not on the session's classpath.
    """
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    try:
        loader = jvm.Thread.currentThread().getContextClassLoader()
        return str(loader.loadClass(class_name).getField("SCHEMA").get(None))
    except Exception as exc:  # py4j raises a generic error for a missing class
        raise MissingJarError(
            f"the record parser {class_name} is not loaded in this Spark session: run "
            "scripts/setup (it builds .deps/spark-jars/recsys-udf.jar) and pass the jars of "
            ".deps/spark-jars/ to Spark (spark-submit --jars, as scripts/submit does)"
        ) from exc


def register_sale_fields(spark: SparkSession) -> None:
    """Register the SaleFields parser as a SQL function of `spark` (a no-op if it is already)."""
    if not spark.catalog.functionExists(SALE_FIELDS_FUNCTION):
        spark.udf.registerJavaFunction(
            SALE_FIELDS_FUNCTION, SALE_FIELDS_CLASS, parser_schema(spark)
        )


def _p(field: str) -> Column:
    """A field of the parser's output."""
    return F.col(f"{_PARSED}.{field}")


def _type(name: str) -> Column:
    """The JSON type of event field `name`: null if absent, 'null' for a JSON null."""
    return _p(f"{name}_type")


def _absent(name: str) -> Column:
    return _type(name).isNull() | (_type(name) == _NULL)


def _is_number(name: str) -> Column:
    return _type(name).isin(_INTEGER, _FLOAT)


def _event_time() -> Column:
    """`timestamp` as a Spark timestamp: ISO-8601 text, or epoch milliseconds as an integer.

    Text with a full date, time and offset (`2026-11-27T09:00:00.123Z`, `...+01:00`) comes
    parsed by the parser (`timestamp_micros`, equal to Spark's cast); any other text that
    starts with a date goes through Spark's cast.
    """
    text = _p("timestamp_text")
    millis = _p("timestamp_millis")
    micros = _p("timestamp_micros")
    return (
        F.when(millis.between(*_MILLIS_RANGE), F.timestamp_millis(millis))
        .when(micros.isNotNull(), F.timestamp_micros(micros))
        .when((_type(S.TIMESTAMP) == _STRING) & text.rlike(_ISO_PREFIX), text.try_cast("timestamp"))
        .otherwise(F.lit(None).cast("timestamp"))
    )


def _reason(
    max_message_bytes: int,
    max_quantity: int,
    max_future_seconds: int,
    min_timestamp: datetime,
    rating_range: tuple[float, float],
) -> Column:
    """The first thing wrong with a record (checks in a fixed order), or null if valid.

    "Far future" is judged against the record's Kafka timestamp, not the wall clock, so a
    batch replayed after a crash classifies every record exactly as the first time.
    """
    quantity = _p(S.QUANTITY)
    price = _p(S.PRICE)
    rating = _p(S.RATING)
    event_time = F.col(S.EVENT_TIME)
    latest_allowed = F.col(S.KAFKA_TIMESTAMP) + F.make_dt_interval(
        secs=F.lit(max_future_seconds)
    )
    checks: list[tuple[Column, Column]] = [
        (F.coalesce(F.octet_length(F.col("value")), F.lit(0)) > max_message_bytes,
         F.lit(Reason.OVERSIZED)),
        (_p("json") == _MALFORMED, F.lit(Reason.MALFORMED_JSON)),
        (_p("json") == _NOT_AN_OBJECT, F.lit(Reason.NOT_AN_OBJECT)),
    ]
    checks += [
        (_absent(name), F.lit(Reason.of(Reason.MISSING_FIELD, name)))
        for name in S.REQUIRED_FIELDS
    ]
    checks += [
        (_type(name) != _STRING, F.lit(Reason.of(Reason.WRONG_TYPE, name)))
        for name in (S.USER_ID, S.PRODUCT_ID)
    ]
    checks += [
        (~_absent(S.EVENT_ID) & (_type(S.EVENT_ID) != _STRING),
         F.lit(Reason.of(Reason.WRONG_TYPE, S.EVENT_ID))),
        (_type(S.QUANTITY) != _INTEGER, F.lit(Reason.of(Reason.WRONG_TYPE, S.QUANTITY))),
        (~_type(S.TIMESTAMP).isin(_STRING, _INTEGER),
         F.lit(Reason.of(Reason.WRONG_TYPE, S.TIMESTAMP))),
    ]
    # The parser names the first blank id (empty, or only the contract's BLANK_CHARACTERS) in
    # this order; an absent or null event_id gets a default one, a blank one is no id.
    checks += [
        (_p("blank_id") == name, F.lit(Reason.of(Reason.EMPTY_ID, name)))
        for name in (S.USER_ID, S.PRODUCT_ID, S.EVENT_ID)
    ]
    checks += [
        (quantity.isNull(), F.lit(Reason.QUANTITY_TOO_LARGE)),  # an integer beyond 64 bits
        (quantity <= 0, F.lit(Reason.QUANTITY_NOT_POSITIVE)),
        (quantity > max_quantity, F.lit(Reason.QUANTITY_TOO_LARGE)),
        (event_time.isNull(), F.lit(Reason.TIMESTAMP_UNPARSEABLE)),
        (event_time < F.lit(min_timestamp).cast("timestamp"), F.lit(Reason.TIMESTAMP_TOO_OLD)),
        (event_time > latest_allowed, F.lit(Reason.TIMESTAMP_IN_FUTURE)),
        # 1e400 or a 400-digit integer reads as +Infinity: no price either
        (~_absent(S.PRICE) & (~_is_number(S.PRICE) | (price < 0) | F.isnan(price)
                              | (price == float("inf"))),
         F.lit(Reason.PRICE_INVALID)),
        (~_absent(S.RATING) & (~_is_number(S.RATING) | F.isnan(rating)
                               | ~rating.between(*rating_range)),
         F.lit(Reason.RATING_INVALID)),
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


class Classifier:
    """`classify` with its column expressions built once, for the limits given.

    The expressions depend only on the limits, so a streaming job builds them once and each
    micro-batch costs three projections instead of the calls into the JVM that building them
    takes (benchmarks/DECISIONS.md, row `the checks' expressions built once`).
    Column expressions refer to columns by name, so one set serves every batch's DataFrame.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int,
        max_quantity: int,
        max_future_seconds: int,
        min_timestamp: datetime,
        rating_range: tuple[float, float],
    ) -> None:
        data = F.col("value").cast("binary")
        # Oversized values are not parsed at all: a huge message must not cost a huge parse.
        # `value` stays bytes: the quarantine keeps a bad record's bytes exactly as they came.
        self._parse = [
            data.alias("value"),
            F.when(
                F.coalesce(F.octet_length(data), F.lit(0)) <= max_message_bytes,
                F.call_function(SALE_FIELDS_FUNCTION, data),
            ).alias(_PARSED),
            F.col("topic").alias(S.KAFKA_TOPIC),
            F.col("partition").cast("int").alias(S.KAFKA_PARTITION),
            F.col("offset").cast("long").alias(S.KAFKA_OFFSET),
            F.col("timestamp").cast("timestamp").alias(S.KAFKA_TIMESTAMP),
        ]
        self._fields = [
            F.coalesce(
                _p(S.EVENT_ID),
                F.concat_ws("-", S.KAFKA_TOPIC, S.KAFKA_PARTITION, S.KAFKA_OFFSET),
            ).alias(S.EVENT_ID),
            _p(S.USER_ID).alias(S.USER_ID),
            _p(S.PRODUCT_ID).alias(S.PRODUCT_ID),
            F.when(_p(S.QUANTITY).between(-(2**31), 2**31 - 1), _p(S.QUANTITY))
            .cast("int").alias(S.QUANTITY),
            _event_time().alias(S.EVENT_TIME),
            _p(S.PRICE).alias(S.PRICE),
            _p(S.RATING).alias(S.RATING),
        ]
        # The output: every column but the scratch ones, then the reason.
        kept = ["value", S.KAFKA_TOPIC, S.KAFKA_PARTITION, S.KAFKA_OFFSET]
        kept += [S.EVENT_ID, S.USER_ID, S.PRODUCT_ID, S.QUANTITY, S.EVENT_TIME, S.PRICE,
                 S.RATING]
        self._output = [
            *[F.col(name) for name in kept],
            _reason(max_message_bytes, max_quantity, max_future_seconds, min_timestamp,
                    rating_range).alias(S.REASON),
        ]

    def __call__(self, raw: DataFrame) -> DataFrame:
        """Kafka records -> one row each with the event's fields, `reason` (null if valid),
        source. `raw` has the Kafka source columns: value (binary or string), topic,
        partition, offset, timestamp."""
        require_columns(raw, KAFKA_SOURCE_COLUMNS, "the Kafka input")
        register_sale_fields(raw.sparkSession)
        return raw.select(*self._parse).select("*", *self._fields).select(*self._output)


def classify(
    raw: DataFrame,
    *,
    max_message_bytes: int,
    max_quantity: int,
    max_future_seconds: int,
    min_timestamp: datetime,
    rating_range: tuple[float, float],
) -> DataFrame:
    """Kafka records -> one row each with the event's fields, `reason` (null if valid), source
    (a one-off Classifier; a streaming job keeps one)."""
    return Classifier(
        max_message_bytes=max_message_bytes,
        max_quantity=max_quantity,
        max_future_seconds=max_future_seconds,
        min_timestamp=min_timestamp,
        rating_range=rating_range,
    )(raw)
