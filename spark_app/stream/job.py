"""Wiring of the streaming query: Kafka source -> BatchProcessor, progress, clean stop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from spark_app.errors import BrokerUnavailableError
from spark_app.stream.batch import BatchProcessor
from spark_app.stream.threshold import events_until_next_run

log = logging.getLogger(__name__)


def check_broker(bootstrap_servers: str, topic: str, timeout_seconds: float) -> None:
    """Fail fast, with a clear message, when no broker answers; warn if the topic is missing."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers.split(","),
            bootstrap_timeout_ms=int(timeout_seconds * 1000),
            request_timeout_ms=int(timeout_seconds * 1000) + 1000,
        )
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"no Kafka broker answered at {bootstrap_servers} within {timeout_seconds:.0f} s "
            f"({type(exc).__name__}); start one (scripts/kafka start) or fix "
            "kafka.bootstrap_servers"
        ) from None
    try:
        if topic not in consumer.topics():
            log.warning("topic %r does not exist yet on %s; waiting for it to appear",
                        topic, bootstrap_servers)
    finally:
        consumer.close()


def kafka_stream(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    topic: str,
    starting_offsets: str,
    max_offsets_per_trigger: int,
    fail_on_data_loss: bool,
    consumer_options: Mapping[str, str] | None = None,
) -> DataFrame:
    """The topic as a streaming DataFrame with the Kafka source's columns.

    `consumer_options` are Kafka consumer settings (e.g. max.poll.records), passed as kafka.<key>.
    """
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", starting_offsets)
        .option("failOnDataLoss", str(fail_on_data_loss).lower())
    )
    for key, value in (consumer_options or {}).items():
        reader = reader.option(f"kafka.{key}", str(value))
    if max_offsets_per_trigger > 0:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    return reader.load()


class ProgressLogger(StreamingQueryListener):
    """A progress line every `every` batches: rates, batch time, counts from the ledger."""

    def __init__(self, processor: BatchProcessor, threshold: int, every: int) -> None:
        self._processor = processor
        self._threshold = threshold
        self._every = every

    def onQueryStarted(self, event) -> None:
        log.info("streaming query %s started", event.id)

    def onQueryProgress(self, event) -> None:
        progress = event.progress
        if progress.batchId % self._every:
            return
        ledger = self._processor.ledger
        log.info(
            "progress: batch %d, %d rows, input %.0f rows/s, processed %.0f rows/s, "
            "batch %.2f s | %d valid, %d quarantined so far, %d until the next run, %d runs",
            progress.batchId, progress.numInputRows, progress.inputRowsPerSecond or 0.0,
            progress.processedRowsPerSecond or 0.0,
            (progress.batchDuration or 0) / 1000, ledger.total_valid, ledger.total_quarantined,
            events_until_next_run(ledger.trained_through, ledger.total_valid, self._threshold),
            len(ledger.trainings),
        )

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        if event.exception:
            log.error("streaming query stopped with an error: %s", event.exception)


class StopFlag:
    """Set by SIGTERM/SIGINT: the query stops after the batch in progress."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping after the current batch", signal.Signals(signum).name)
        self.event.set()


def stop_between_batches(query: StreamingQuery, deadline_seconds: float = 600) -> None:
    """Stop the query once no batch is running (a running one finishes first)."""
    deadline = time.monotonic() + deadline_seconds
    while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
        query.awaitTermination(0.2)
    query.stop()


def run_query(
    stream: DataFrame,
    processor: BatchProcessor,
    *,
    checkpoint: str | Path,
    trigger_interval_seconds: float,
    available_now: bool,
    stop: StopFlag,
    poll_seconds: float = 1.0,
) -> StreamingQuery:
    """Run until the stream ends (available_now), a stop signal, or an error.

    Returns the stopped query (its `recentProgress` has the per-batch figures).
    """
    spark = stream.sparkSession
    processor.recover(spark)
    writer = stream.writeStream.foreachBatch(processor.process).option(
        "checkpointLocation", str(checkpoint)
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    elif trigger_interval_seconds > 0:
        writer = writer.trigger(processingTime=f"{trigger_interval_seconds} seconds")
    query = writer.queryName("sales-ingest").start()
    try:
        while not query.awaitTermination(poll_seconds):
            if stop.event.is_set():
                stop_between_batches(query)
                break
            processor.check_max_wait(spark)
    finally:
        if query.isActive:
            query.stop()
    if query.exception() is not None:
        raise query.exception()  # type: ignore[misc]
    if available_now:
        processor.check_max_wait(spark)
    return query
