"""The sales event on the Kafka topic, and what the quarantine says about a bad one.

One JSON object per Kafka record:

    {"event_id": "e-42", "user_id": "u17", "product_id": "p3", "quantity": 2,
     "timestamp": "2026-11-27T10:00:00Z", "price": 9.5}

``user_id``, ``product_id`` (non-blank strings), ``quantity`` (a positive JSON integer) and
``timestamp`` (ISO-8601 string or epoch milliseconds as a JSON integer) are required;
``event_id`` (non-blank string) and ``price`` (non-negative finite number) are optional. An
event without ``event_id`` (or with ``null``) gets ``<topic>-<partition>-<offset>`` so that
every stored event has an id. Ids are opaque strings: any Unicode (NUL, CR/LF, quotes, emoji,
right-to-left and zero-width characters included), compared as they are, never trimmed. An id
is blank when it is empty or holds only `BLANK_CHARACTERS`.
"""

from __future__ import annotations

# --- fields of the JSON event ---------------------------------------------------------------
EVENT_ID = "event_id"
USER_ID = "user_id"
PRODUCT_ID = "product_id"
QUANTITY = "quantity"
TIMESTAMP = "timestamp"
PRICE = "price"
RATING = "rating"  # optional: an explicit rating (explicit ALS fits it when present)

REQUIRED_FIELDS: tuple[str, ...] = (USER_ID, PRODUCT_ID, QUANTITY, TIMESTAMP)
OPTIONAL_FIELDS: tuple[str, ...] = (EVENT_ID, PRICE, RATING)
ID_FIELDS: tuple[str, ...] = (USER_ID, PRODUCT_ID)

# An id made only of these is blank (quarantined as empty_id:<field>): the characters for which
# Python's str.isspace() is true. They include every character Java's Character.isWhitespace or
# Character.isSpaceChar accepts (tab, LF, VT, FF, CR, U+001C-U+001F, the space separators of
# category Zs such as U+00A0 and U+3000, U+2028, U+2029), and U+0085 (NEL). Zero-width and
# other format characters (U+200B, U+FEFF) are not blank: an id of them is an id.
BLANK_CHARACTERS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def is_blank(text: str) -> bool:
    """Whether an id is empty or made only of BLANK_CHARACTERS (then it is no id)."""
    return not text.strip(BLANK_CHARACTERS)


# --- where a record came from: kept with every stored or quarantined record ------------------
KAFKA_TOPIC = "kafka_topic"
KAFKA_PARTITION = "kafka_partition"
KAFKA_OFFSET = "kafka_offset"
KAFKA_TIMESTAMP = "kafka_timestamp"

# --- the quarantine (paths.results/quarantine/batch_id=<N>/*.parquet) ------------------------
# Parquet, one folder per micro-batch; any Parquet reader reads it (pandas.read_parquet,
# pyarrow.parquet.read_table, spark.read.parquet). Its files also hold the event's columns, with
# what did parse (docs/run-format.md); these are the columns of the quarantine itself.
RAW_VALUE = "raw_value"  # binary: the Kafka value's bytes as they arrived, cut to the cap
RAW_VALUE_BYTES = "raw_value_bytes"  # long: the length of the whole value, in bytes
RAW_VALUE_TRUNCATED = "raw_value_truncated"  # bool: raw_value holds only the first
# stream.quarantine_max_bytes bytes
REASON = "reason"  # why it was quarantined: `code` or `code:field` (Reason)
QUARANTINE_DIR = "quarantine"
QUARANTINE_BATCH = "batch_id"  # the folder level: quarantine/batch_id=<N>/ (a micro-batch)
QUARANTINE_COLUMNS: tuple[str, ...] = (
    RAW_VALUE, RAW_VALUE_BYTES, RAW_VALUE_TRUNCATED, REASON, KAFKA_TOPIC, KAFKA_PARTITION,
    KAFKA_OFFSET,
)


def default_event_id(topic: str, partition: int, offset: int) -> str:
    """The id of an event sent without `event_id`: its position on the topic."""
    return f"{topic}-{partition}-{offset}"


class Reason:
    """Why an event was quarantined: the `reason` column holds `CODE` or `CODE:field`.

    The producer's bad-event injection produces each kind; the job's validation detects each.
    """

    OVERSIZED = "oversized"  # raw value longer than stream.max_message_bytes
    # not parseable as strict JSON (also: invalid UTF-8, a duplicate key, text after the
    # object, an id or timestamp string holding a lone UTF-16 surrogate escape such as \ud800)
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"  # valid JSON but not an object (array, number, string)
    MISSING_FIELD = "missing_field"  # required field absent or null, e.g. missing_field:user_id
    EMPTY_ID = "empty_id"  # user_id, product_id or event_id empty or blank (BLANK_CHARACTERS)
    WRONG_TYPE = "wrong_type"  # e.g. quantity "3" (a string) or 2.5; ids that are not strings
    QUANTITY_NOT_POSITIVE = "quantity_not_positive"  # quantity <= 0
    QUANTITY_TOO_LARGE = "quantity_too_large"  # quantity > stream.max_quantity
    TIMESTAMP_UNPARSEABLE = "timestamp_unparseable"  # neither ISO-8601 nor epoch milliseconds
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"  # beyond now + stream.max_future_seconds
    TIMESTAMP_TOO_OLD = "timestamp_too_old"  # before stream.min_timestamp
    # price present but negative, not a number, or beyond a double (1e400, a 400-digit integer)
    PRICE_INVALID = "price_invalid"
    RATING_INVALID = "rating_invalid"  # rating present but not a finite number in the range

    @staticmethod
    def of(code: str, field: str | None = None) -> str:
        return f"{code}:{field}" if field else code

    @staticmethod
    def code_of(reason: str) -> str:
        """The code of a `reason` value, without its `:field` (a bounded set, for counting)."""
        return reason.partition(":")[0]
