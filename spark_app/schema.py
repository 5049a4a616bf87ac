"""Column names, schemas and id conventions: declared once, imported everywhere.

A sales event on the Kafka topic is one JSON object:

    {"event_id": "e-42", "user_id": "u17", "product_id": "p3", "quantity": 2,
     "timestamp": "2026-11-27T10:00:00Z", "price": 9.5}

``user_id``, ``product_id`` (non-empty strings), ``quantity`` (a positive JSON integer) and
``timestamp`` (ISO-8601 string or epoch milliseconds as a JSON integer) are required;
``event_id`` (string) and ``price`` (non-negative number) are optional. An event without
``event_id`` gets ``<topic>-<partition>-<offset>`` so that every persisted event has an id.
"""

from __future__ import annotations

from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# --- fields of the JSON event (producer and job agree on these) --------------------------------
EVENT_ID = "event_id"
USER_ID = "user_id"
PRODUCT_ID = "product_id"
QUANTITY = "quantity"
TIMESTAMP = "timestamp"
PRICE = "price"

REQUIRED_FIELDS: tuple[str, ...] = (USER_ID, PRODUCT_ID, QUANTITY, TIMESTAMP)
OPTIONAL_FIELDS: tuple[str, ...] = (EVENT_ID, PRICE)

# --- Kafka source metadata kept with every record ---------------------------------------------
KAFKA_TOPIC = "kafka_topic"
KAFKA_PARTITION = "kafka_partition"
KAFKA_OFFSET = "kafka_offset"
KAFKA_TIMESTAMP = "kafka_timestamp"
RAW_VALUE = "raw_value"

# --- columns added by the job -------------------------------------------------------------------
EVENT_TIME = "event_time"  # parsed `timestamp`, a Spark timestamp (UTC)
BATCH_ID = "batch_id"  # micro-batch that persisted the row (idempotency key)
SEQ = "seq"  # position of a valid event in commit order: 0, 1, 2, ... (defines training sets)
INPUT_SPLIT = "_input_split"  # scratch, never stored: the Spark partition a batch row was read in
SPLIT_POSITION = "split_position"  # stored: a valid event's position among its split's valid ones
SEQ_BASE = "seq_base"  # stored (folder name): `seq` of the split's first valid event
STATUS = "_status"  # scratch folder name while a batch is staged: valid or quarantined
REASON = "reason"  # why a record was quarantined
QUARANTINED_AT = "quarantined_at"

# --- training columns ---------------------------------------------------------------------------
USER_IDX = "user_idx"  # integer ALS id of a user, stable across runs
PRODUCT_IDX = "product_idx"  # integer ALS id of a product, stable across runs
RATING = "rating"  # aggregated preference: sum of quantity per (user, product)
PURCHASES = "purchases"  # number of purchase events per (user, product)
PREDICTION = "prediction"
SCORE = "score"
RANK = "rank"

# --- graph columns (GraphFrames' conventions: vertices `id`, edges `src`/`dst`) ----------------
VERTEX_ID = "id"
VERTEX_TYPE = "type"
VERTEX_LABEL = "label"
EDGE_SRC = "src"
EDGE_DST = "dst"
USER_VERTEX_PREFIX = "u:"
PRODUCT_VERTEX_PREFIX = "p:"
USER_TYPE = "user"
PRODUCT_TYPE = "product"

# The raw Kafka value parsed with every field as text, so that wrong types can be told apart
# from missing fields (validation decides, not the JSON reader).
RAW_EVENT_SCHEMA = StructType(
    [StructField(name, StringType()) for name in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)]
)

# A validated event, as persisted in the event store and handed to training.
EVENT_SCHEMA = StructType(
    [
        StructField(EVENT_ID, StringType(), nullable=False),
        StructField(USER_ID, StringType(), nullable=False),
        StructField(PRODUCT_ID, StringType(), nullable=False),
        StructField(QUANTITY, IntegerType(), nullable=False),
        StructField(EVENT_TIME, TimestampType(), nullable=False),
        StructField(PRICE, DoubleType(), nullable=True),
        StructField(KAFKA_TOPIC, StringType(), nullable=False),
        StructField(KAFKA_PARTITION, IntegerType(), nullable=False),
        StructField(KAFKA_OFFSET, LongType(), nullable=False),
    ]
)

# A quarantined record: the raw value, why, and where it came from.
QUARANTINE_SCHEMA = StructType(
    [
        StructField(RAW_VALUE, StringType(), nullable=True),
        StructField(REASON, StringType(), nullable=False),
        StructField(KAFKA_TOPIC, StringType(), nullable=False),
        StructField(KAFKA_PARTITION, IntegerType(), nullable=False),
        StructField(KAFKA_OFFSET, LongType(), nullable=False),
    ]
)


def user_vertex_id(raw_user_id: str) -> str:
    """Graph vertex id of a user; never equal to a product's, whatever the raw ids are."""
    return USER_VERTEX_PREFIX + raw_user_id


def product_vertex_id(raw_product_id: str) -> str:
    """Graph vertex id of a product; never equal to a user's, whatever the raw ids are."""
    return PRODUCT_VERTEX_PREFIX + raw_product_id


class Reason:
    """Why an event was quarantined: the `reason` column holds `CODE` or `CODE:field`.

    The producer's bad-event injection produces each kind; the job's validation detects each.
    """

    OVERSIZED = "oversized"  # raw value longer than stream.max_message_bytes
    MALFORMED_JSON = "malformed_json"  # not parseable as JSON
    NOT_AN_OBJECT = "not_an_object"  # valid JSON but not an object (array, number, string)
    MISSING_FIELD = "missing_field"  # required field absent or null, e.g. missing_field:user_id
    EMPTY_ID = "empty_id"  # user_id/product_id is an empty or blank string
    WRONG_TYPE = "wrong_type"  # e.g. quantity "3" (a string) or 2.5; ids that are not strings
    QUANTITY_NOT_POSITIVE = "quantity_not_positive"  # quantity <= 0
    QUANTITY_TOO_LARGE = "quantity_too_large"  # quantity > stream.max_quantity
    TIMESTAMP_UNPARSEABLE = "timestamp_unparseable"  # neither ISO-8601 nor epoch milliseconds
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"  # beyond now + stream.max_future_seconds
    TIMESTAMP_TOO_OLD = "timestamp_too_old"  # before stream.min_timestamp
    PRICE_INVALID = "price_invalid"  # price present but negative or not a number

    @staticmethod
    def of(code: str, field: str | None = None) -> str:
        return f"{code}:{field}" if field else code
