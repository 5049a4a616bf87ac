"""The sales event on the Kafka topic, and what the quarantine says about a bad one.

One JSON object per Kafka record:

    {"event_id": "e-42", "user_id": "u17", "product_id": "p3", "quantity": 2,
     "timestamp": "2026-11-27T10:00:00Z", "price": 9.5}

``user_id``, ``product_id`` (non-blank strings), ``quantity`` (a positive JSON integer) and
``timestamp`` (ISO-8601 string or epoch milliseconds as a JSON integer) are required;
``event_id`` (string) and ``price`` (non-negative number) are optional. An event without
``event_id`` gets ``<topic>-<partition>-<offset>`` so that every stored event has an id.
Ids are opaque strings: any Unicode, compared as they are.
"""

from __future__ import annotations

# --- fields of the JSON event ---------------------------------------------------------------
EVENT_ID = "event_id"
USER_ID = "user_id"
PRODUCT_ID = "product_id"
QUANTITY = "quantity"
TIMESTAMP = "timestamp"
PRICE = "price"

REQUIRED_FIELDS: tuple[str, ...] = (USER_ID, PRODUCT_ID, QUANTITY, TIMESTAMP)
OPTIONAL_FIELDS: tuple[str, ...] = (EVENT_ID, PRICE)
ID_FIELDS: tuple[str, ...] = (USER_ID, PRODUCT_ID)

# --- where a record came from: kept with every stored or quarantined record ------------------
KAFKA_TOPIC = "kafka_topic"
KAFKA_PARTITION = "kafka_partition"
KAFKA_OFFSET = "kafka_offset"
KAFKA_TIMESTAMP = "kafka_timestamp"

# --- the quarantine (paths.results/quarantine/batch_id=<N>/*.parquet) ------------------------
RAW_VALUE = "raw_value"  # the Kafka value as it arrived
REASON = "reason"  # why it was quarantined: `code` or `code:field` (Reason)
QUARANTINE_DIR = "quarantine"


def default_event_id(topic: str, partition: int, offset: int) -> str:
    """The id of an event sent without `event_id`: its position on the topic."""
    return f"{topic}-{partition}-{offset}"


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

    @staticmethod
    def code_of(reason: str) -> str:
        """The code of a `reason` value, without its `:field` (a bounded set, for counting)."""
        return reason.partition(":")[0]
