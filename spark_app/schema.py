"""The job's Spark schemas and its own column names, built on the shared contract.

The event's fields, the quarantine's columns and the run format are declared once in the
framework-free package `recsys_contract` (the producer, visualizer and API server import only
that); this module re-exports the names the job uses and adds the Spark types and the columns
only the job has.
"""

from __future__ import annotations

from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from recsys_contract.events import (  # noqa: F401 - re-exported for the job's modules
    BLANK_CHARACTERS,
    EVENT_ID,
    KAFKA_OFFSET,
    KAFKA_PARTITION,
    KAFKA_TIMESTAMP,
    KAFKA_TOPIC,
    OPTIONAL_FIELDS,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATING,
    RAW_VALUE,
    RAW_VALUE_BYTES,
    RAW_VALUE_TRUNCATED,
    REASON,
    REQUIRED_FIELDS,
    TIMESTAMP,
    USER_ID,
    Reason,
)
from recsys_contract.runs import (  # noqa: F401 - re-exported for the job's modules
    EDGE_DST,
    EDGE_SRC,
    PRODUCT_TYPE,
    PRODUCT_VERTEX_PREFIX,
    PURCHASES,
    RANK,
    SCORE,
    USER_TYPE,
    USER_VERTEX_PREFIX,
    VERTEX_ID,
    VERTEX_LABEL,
    VERTEX_TYPE,
)

# --- columns added by the job -------------------------------------------------------------------
EVENT_TIME = "event_time"  # parsed `timestamp`, a Spark timestamp (UTC)
BATCH_ID = "batch_id"  # micro-batch that persisted the row (idempotency key)
SEQ = "seq"  # position of a valid event in commit order: 0, 1, 2, ... (defines training sets)
INPUT_SPLIT = "_input_split"  # scratch, never stored: the Spark partition a batch row was read in
SPLIT_POSITION = "split_position"  # stored: a valid event's position among its split's valid ones
SEQ_BASE = "seq_base"  # stored (folder name): `seq` of the split's first valid event
STATUS = "_status"  # scratch folder name while a batch is staged: valid or quarantined

# --- training columns ---------------------------------------------------------------------------
USER_IDX = "user_idx"  # integer ALS id of a user, stable across runs
PRODUCT_IDX = "product_idx"  # integer ALS id of a product, stable across runs
# The pairs' aggregated preference (the event's `rating` field has the same name): in implicit
# mode the summed quantity, in explicit mode the mean rating where the events carry one.
PREDICTION = "prediction"

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
        # Last: the store's files written before ratings existed lack it (read as null).
        StructField(RATING, DoubleType(), nullable=True),
    ]
)

# A quarantined record: the raw value (bytes, cut to stream.quarantine_max_bytes), why, and
# where it came from (recsys_contract.events.QUARANTINE_COLUMNS).
QUARANTINE_SCHEMA = StructType(
    [
        StructField(RAW_VALUE, BinaryType(), nullable=True),
        StructField(RAW_VALUE_BYTES, LongType(), nullable=True),
        StructField(RAW_VALUE_TRUNCATED, BooleanType(), nullable=True),
        StructField(REASON, StringType(), nullable=False),
        StructField(KAFKA_TOPIC, StringType(), nullable=False),
        StructField(KAFKA_PARTITION, IntegerType(), nullable=False),
        StructField(KAFKA_OFFSET, LongType(), nullable=False),
    ]
)
