"""Kafka transport: sends records, counts every delivery confirmation, flushes on exit.

Each send registers a callback and an errback on its future, so `stats.acked + stats.failed`
reaches `stats.sent` once everything in flight is resolved; `flush()` waits for that.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import DefaultPartitioner

from producer.errors import ProducerConfigError
from recsys_contract.errors import BrokerUnavailableError

log = logging.getLogger(__name__)

CLIENT_ID = "sales-simulator"
COMPRESSION_TYPES = ("auto", "none", "gzip", "snappy", "lz4", "zstd")
_MAX_LOGGED_ERRORS = 5


@dataclass(frozen=True)
class ProducerSettings:
    """The KafkaProducer settings the simulator chooses (see docs/producer.md for why)."""

    acks: str = "all"  # every in-sync replica has the record before it counts as acknowledged
    enable_idempotence: bool = True  # retries never duplicate or reorder within a partition
    linger_ms: int = 10  # wait up to this long to fill a batch
    batch_size: int = 512 * 1024  # bytes per partition batch (before compression)
    compression_type: str = "auto"  # auto | none | gzip | snappy | lz4 | zstd (see resolve_...)
    max_in_flight_requests_per_connection: int = 5  # the most idempotence allows
    max_request_size: int = 4 * 1024 * 1024  # largest request to the broker
    delivery_timeout_ms: int = 120_000  # a record not acknowledged by then fails
    max_block_ms: int = 60_000  # longest send() may block (metadata, full buffer)
    metrics_enabled: bool = False  # kafka-python's client metrics cost CPU on every send
    # Not a KafkaProducer setting: kafka-python 3 has no buffer_memory bound, so the transport
    # itself pauses sending while this many records are unconfirmed (bounds memory).
    max_unconfirmed: int = 200_000

    @property
    def effective_compression(self) -> str:
        """The codec actually used ("auto" resolved for the installed packages)."""
        return resolve_compression(self.compression_type)

    def kafka_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka.KafkaProducer."""
        config = asdict(self)
        del config["max_unconfirmed"]
        codec = self.effective_compression
        config["compression_type"] = None if codec == "none" else codec
        return config


# codec -> (module kafka-python imports, pip package that provides it)
CODEC_PACKAGES = {"lz4": ("lz4", "lz4"), "zstd": ("zstandard", "zstandard"),
                  "snappy": ("snappy", "python-snappy")}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_compression(choice: str) -> str:
    """The codec for `choice`; "auto" picks the cheapest for the CPU with what is installed.

    kafka-python checksums every batch with CRC-32C in pure Python unless the `crc32c`
    package is installed (benchmarks/DECISIONS.md, row `crc32c` and `lz4`), so
    without it a compressed batch (fewer bytes to checksum)
    is cheaper than an uncompressed one. auto: lz4 if the `lz4` package is installed, else
    none if `crc32c` is, else gzip (standard library).
    """
    if choice != "auto":
        return choice
    if _installed("lz4"):
        return "lz4"
    return "none" if _installed("crc32c") else "gzip"


class CachedKeyPartitioner(DefaultPartitioner):
    """Kafka's default key partitioning (murmur2, as the Java client), memoised per key.

    kafka-python hashes in pure Python on every send; users repeat, so the hash of each key is
    computed once per partition count. Keyless records keep the default behaviour.
    """

    MAX_KEYS = 2_000_000  # the memo is cleared when it grows past this

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[tuple[str, int], dict[bytes, int]] = {}
        self._size = 0

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if serialized_key is None:
            return super().partition(topic, key, None, value, serialized_value, cluster)
        partitions = cluster.partitions_for_topic(topic)
        memo = self._memo.get((topic, len(partitions or ())))
        if memo is not None:
            found = memo.get(serialized_key)
            if found is not None:
                return found
        chosen = super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        if self._size >= self.MAX_KEYS:
            self._memo.clear()
            self._size = 0
        self._memo.setdefault((topic, len(partitions or ())), {})[serialized_key] = chosen
        self._size += 1
        return chosen


@dataclass
class DeliveryStats:
    """Counts of records handed to the producer, acknowledged by the broker, and failed."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    bad_sent: int = 0  # of `sent`, records made malformed on purpose
    value_bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error type -> count
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked - self.failed

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def acked_rate(self) -> float:
        """Acknowledged records per second of wall time."""
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        text = (
            f"sent={self.sent} acked={self.acked} failed={self.failed} "
            f"unconfirmed={self.in_flight} bad_on_purpose={self.bad_sent} "
            f"elapsed={self.elapsed:.2f}s rate={self.acked_rate:,.0f} acked/s "
            f"avg_value={self.value_bytes / max(self.sent, 1):.0f}B"
        )
        if self.errors:
            text += f" errors={self.errors}"
        return text


class KafkaTransport:
    """A KafkaProducer on one topic that confirms every delivery.

    Use as a context manager: leaving it flushes what is in flight and closes the producer.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        settings: ProducerSettings | None = None,
        *,
        client_id: str = CLIENT_ID,
        connect_timeout_s: float = 15.0,
    ) -> None:
        self.topic = topic
        self.settings = settings or ProducerSettings()
        self.stats = DeliveryStats()
        self._lock = threading.Lock()
        codec = self.settings.effective_compression
        if codec not in COMPRESSION_TYPES:
            raise ProducerConfigError(f"compression: unknown codec {codec!r}")
        if codec in CODEC_PACKAGES and not _installed(CODEC_PACKAGES[codec][0]):
            raise ProducerConfigError(
                f"compression {codec} needs the Python package {CODEC_PACKAGES[codec][1]!r}, "
                "which is not installed; use --compression gzip or none"
            )
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_servers.split(","),
                client_id=client_id,
                bootstrap_timeout_ms=int(connect_timeout_s * 1000),
                partitioner=CachedKeyPartitioner(),
                **self.settings.kafka_config(),
            )
        except KafkaError as exc:  # 3.x: KafkaTimeoutError "Unable to bootstrap"
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {bootstrap_servers} within {connect_timeout_s:.0f} s;"
                " start one (scripts/kafka start) or pass --bootstrap-servers"
            ) from exc
        self._send = self._producer.send

    # Callbacks usually run on the producer's I/O thread, but on the sending thread when the
    # future is already resolved as the callback is added: the counters take a lock.
    def _on_ack(self, _metadata: Any) -> None:
        with self._lock:
            self.stats.acked += 1

    def _on_error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        with self._lock:
            self.stats.failed += 1
            self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
        if self.stats.failed <= _MAX_LOGGED_ERRORS:
            log.error("delivery to %s failed: %s", self.topic, exc)

    def send_many(self, keys: list[bytes | None], values: list[bytes]) -> None:
        """Send records given as parallel lists (the hot path: no per-record call overhead)."""
        send, topic, on_ack, on_error = self._send, self.topic, self._on_ack, self._on_error
        stats = self.stats
        for key, value in zip(keys, values, strict=True):
            try:
                future = send(topic, value=value, key=key)
            except KafkaError as exc:
                stats.sent += 1
                on_error(exc)
                raise
            stats.sent += 1
            stats.value_bytes += len(value)
            future.add_callback(on_ack)
            future.add_errback(on_error)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything sent is acknowledged or failed; False if time ran out."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:  # KafkaTimeoutError: some records still unconfirmed
            log.warning("flush did not finish: %s", exc)
        # Callbacks of the last batch can trail flush() by a moment.
        deadline = time.monotonic() + 5.0
        while self.stats.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stats.finished = time.monotonic()
        return self.stats.in_flight == 0

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and close the producer."""
        self.flush(timeout_s)
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> KafkaTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class StdoutTransport:
    """Writes each value as one line to a stream instead of Kafka (--dry-run)."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._out = stream or sys.stdout.buffer
        self.stats = DeliveryStats()

    def send_many(self, keys: list[bytes | None], values: list[bytes]) -> None:
        for value in values:
            self._out.write(value + b"\n")
        self.stats.sent += len(values)
        self.stats.acked += len(values)
        self.stats.value_bytes += sum(map(len, values))

    def flush(self, timeout_s: float | None = None) -> bool:
        self._out.flush()
        self.stats.finished = time.monotonic()
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        self.flush()

    def __enter__(self) -> StdoutTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    replication: int = 1,
    *,
    timeout_s: float = 30.0,
) -> bool:
    """Create the topic with `partitions` partitions if it does not exist; True if created."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers.split(","),
            client_id=f"{CLIENT_ID}-admin",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:  # 3.x: KafkaTimeoutError "Unable to bootstrap"
        raise BrokerUnavailableError(
            f"no Kafka broker answered at {bootstrap_servers} within {timeout_s:.0f} s"
        ) from exc
    try:
        if topic in admin.list_topics():
            described = admin.describe_topics([topic])
            have = len(described[0].get("partitions", [])) if described else 0
            if have < partitions:
                log.warning("topic %s exists with %d partition(s), not %d; kept as it is",
                            topic, have, partitions)
            else:
                log.info("topic %s exists (%d partitions); kept as it is", topic, have)
            return False
        spec = {topic: {"num_partitions": partitions, "replication_factor": replication}}
        try:
            admin.create_topics(spec, timeout_ms=int(timeout_s * 1000), wait_for_metadata=True)
        except TopicAlreadyExistsError:
            log.info("topic %s was created meanwhile; kept as it is", topic)
            return False
        log.info("created topic %s (%d partitions, replication %d)", topic, partitions, replication)
        return True
    finally:
        admin.close()
