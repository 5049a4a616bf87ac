"""Wiring of the streaming query: start checks, Kafka source -> BatchProcessor, progress,
clean stop, one-line failures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from recsys_contract.logs import quiet_kafka_client
from spark_app.errors import BrokerUnavailableError, TopicMissingError
from spark_app.stream.batch import BatchProcessor
from spark_app.stream.failures import describe_failure
from spark_app.stream.stop import StopFlag
from spark_app.stream.threshold import events_until_next_run

log = logging.getLogger(__name__)


def check_kafka(
    bootstrap_servers: str,
    topic: str,
    timeout_seconds: float,
    topic_wait_seconds: float = 0,
    *,
    poll_seconds: float = 2.0,
    log_every_seconds: float = 30.0,
    stop: threading.Event | None = None,
) -> None:
    """At start, before Spark: a broker answers and the topic exists, or one line says why not.

    A missing topic is refused at once (`TopicMissingError`) or, with `topic_wait_seconds`,
    waited for with a log line every `log_every_seconds`; a set `stop` ends the wait quietly.
    """
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    def unavailable(exc: Exception) -> BrokerUnavailableError:
        return BrokerUnavailableError(
            f"no Kafka broker answered at {bootstrap_servers} within {timeout_seconds:.0f} s "
            f"({type(exc).__name__}); start one (scripts/kafka start) or fix "
            "kafka.bootstrap_servers"
        )

    stopping = stop or threading.Event()
    with quiet_kafka_client():
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=bootstrap_servers.split(","),
                bootstrap_timeout_ms=int(timeout_seconds * 1000),
                request_timeout_ms=int(timeout_seconds * 1000) + 1000,
                enable_auto_commit=False,
            )
        except KafkaError as exc:
            raise unavailable(exc) from None
        try:
            started = time.monotonic()
            last_log: float | None = None
            while True:
                try:
                    if topic in consumer.topics():
                        return
                except KafkaError as exc:
                    raise unavailable(exc) from None
                waited = time.monotonic() - started
                if waited >= topic_wait_seconds:
                    raise TopicMissingError(_missing_topic(topic, bootstrap_servers, waited))
                if last_log is None or time.monotonic() - last_log >= log_every_seconds:
                    last_log = time.monotonic()
                    log.warning("topic %r does not exist on %s; waiting up to %.0f s more for "
                                "it to be created", topic, bootstrap_servers,
                                topic_wait_seconds - waited)
                if stopping.wait(min(poll_seconds, topic_wait_seconds - waited)):
                    return
        finally:
            consumer.close()


def _missing_topic(topic: str, bootstrap_servers: str, waited: float) -> str:
    after = f" after waiting {waited:.0f} s" if waited >= 1 else ""
    return (
        f"topic {topic!r} does not exist on {bootstrap_servers}{after}; create it "
        f"(scripts/produce --create-topic --topic {topic}, or kafka-topics.sh "
        f"--bootstrap-server {bootstrap_servers} --create --topic {topic}), fix kafka.topic, "
        "or set kafka.topic_wait_seconds to wait for it"
    )


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
        pass  # an error is reported once, by the entrypoint, as its root cause


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
    folders: Mapping[str, str] | None = None,
) -> StreamingQuery | None:
    """Run until the stream ends (available_now), a stop signal, or an error.

    Returns the stopped query (its `recentProgress` has the per-batch figures), or None if a
    stop came before it started. A failure raises JobFailedError (StorageError for an I/O
    error) whose message is the root cause in one line; `folders` (setting -> path) are named
    when the cause names no path.
    """
    spark = stream.sparkSession
    processor.recover(spark)
    if stop.is_set():
        return None
    failures: list[BaseException] = []

    def handle_batch(batch_df: DataFrame, batch_id: int) -> None:
        try:
            processor.process(batch_df, batch_id)
        except BaseException as exc:
            failures.append(exc)  # the Python error itself, before Py4J turns it into text
            raise

    writer = stream.writeStream.foreachBatch(handle_batch).option(
        "checkpointLocation", str(checkpoint)
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    elif trigger_interval_seconds > 0:
        writer = writer.trigger(processingTime=f"{trigger_interval_seconds} seconds")
    query = writer.queryName("sales-ingest").start()
    query_error: BaseException | None = None
    try:
        while True:
            try:
                if query.awaitTermination(poll_seconds):
                    break
                if stop.is_set():
                    stop_between_batches(query)
                    break
            except Exception as exc:  # noqa: BLE001 - StreamingQueryException, reported below
                query_error = exc  # it holds the Java exception, with the cause chain
                break
            processor.check_max_wait(spark)
    finally:
        if query.isActive:
            query.stop()
    error = failures[-1] if failures else query_error or _query_error(query)
    if error is not None and stop.is_set():
        log.warning("the stop interrupted the batch in progress (%s); it is replayed at the "
                    "next start", describe_failure(error, folders))
    elif error is not None:
        raise describe_failure(error, folders) from None
    if available_now and not stop.is_set():
        processor.check_max_wait(spark)
    return query


def _query_error(query: StreamingQuery) -> BaseException | None:
    try:
        return query.exception()
    except Exception as exc:  # noqa: BLE001 - the JVM may be gone: that is the error
        return exc
