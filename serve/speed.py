"""The speed layer: purchases on the Kafka topic folded into the served model between runs.

One thread owns a kafka-python consumer. It reads every partition of `kafka.topic` itself
(`assign`, not a group subscription: each server replica needs every event); its consumer
group (`serve.kafka_group`) only records its progress, for Kafka's lag tools. Each record gets
the job's checks (recsys_contract/validation.py): a record the job quarantines is counted by
reason code and skipped, a valid purchase is folded into the served model.

A new run resets the fold-in to that run's state plus the events after its cut: the watcher
hands the built model to `rebase`; this thread seeks every partition to the run's cut (the
manifest's `kafka.cut`, else the offset after `kafka.offsets`' last), replays the records from
there into the new model while the old one keeps serving, and swaps it in once it has caught
up with what the old one had seen (or after `serve.catch_up_seconds`, the rest following
live). A run without Kafka positions (another topic, or none recorded) is swapped in at once
and the fold-in continues from where the consumer is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from recsys_contract.events import PRODUCT_ID, QUANTITY, USER_ID, Reason
from recsys_contract.runs import Manifest
from recsys_contract.validation import Limits, classify_record
from serve.manager import ModelManager
from serve.metrics import ServeMetrics
from serve.model import ServingModel

log = logging.getLogger(__name__)

POLL_MS = 100  # longest a poll waits for records: bounds the delay of a fold-in and of a stop
RECONNECT_SECONDS = 2.0  # wait before connecting again after the broker failed
PARTITIONS_REFRESH_SECONDS = 10.0  # how often new partitions of the topic are looked for


def cut_of(manifest: Manifest, topic: str) -> dict[int, int] | None:
    """Partition -> offset of the first record after the run's cut; None if the run does not
    say (or was trained on another topic)."""
    if manifest.kafka.topic != topic:
        return None
    if manifest.kafka.cut:
        return {int(p): int(offset) for p, offset in manifest.kafka.cut.items()}
    if manifest.kafka.offsets:
        return {int(p): int(span[1]) + 1 for p, span in manifest.kafka.offsets.items() if span}
    return None


class SpeedLayer:
    """The consumer thread; `rebase` is called by the run watcher, the rest runs inside.

    Positions: `_next` holds, for the served model, the next offset to read per partition
    where known; a partition without one starts at the beginning if the served run named its
    cut (`_from_start`; such a partition had no record before the cut), else at the end.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        limits: Limits,
        manager: ModelManager,
        metrics: ServeMetrics,
        catch_up_seconds: float,
        consumer_factory: Callable[..., Any] = KafkaConsumer,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self.limits = limits
        self.manager = manager
        self.metrics = metrics
        self.catch_up_seconds = catch_up_seconds
        self._consumer_factory = consumer_factory
        self._lock = threading.Lock()  # guards _pending, _connected and the positions below
        self._pending: ServingModel | None = None
        self._connected = False
        self._next: dict[int, int] = {}
        self._from_start = False
        self._reposition = False  # seek every partition from the positions again
        self._partitions: list[TopicPartition] = []
        self._seen: dict[int, int] = {}  # partition -> next offset never read before
        self._newest_ms: int | None = None  # Kafka timestamp of the newest record read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speed-layer", daemon=True)

    # --- called from other threads ---------------------------------------------------------------

    def rebase(self, model: ServingModel) -> None:
        """Serve `model` once the events after its cut are replayed into it; at once if no
        run is served yet or the broker is unreachable (the replay then follows live)."""
        with self._lock:
            if self._connected and self.manager.current is not None:
                self._pending = model
                return
            cut = cut_of(model.manifest, self.topic)
            if cut is not None:
                self._next, self._from_start = dict(cut), True
            elif self.manager.current is None:
                self._next, self._from_start = {}, False
            self._reposition = True
            self.manager.swap(model)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the consumer thread --------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = self._consumer_factory(
                    bootstrap_servers=self.bootstrap_servers.split(","),
                    group_id=self.group_id,
                    client_id=f"{self.group_id}-speed-layer",
                    enable_auto_commit=True,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=POLL_MS,
                    max_poll_records=5000,
                )
                if failures:
                    log.info("speed layer connected to %s again", self.bootstrap_servers)
                failures = 0
                self._consume(consumer)
            except (KafkaError, OSError) as exc:
                if failures == 0:
                    log.warning("speed layer: %s at %s: %s; fold-in paused, retrying",
                                type(exc).__name__, self.bootstrap_servers, exc)
                failures += 1
            finally:
                self._set_connected(False)
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception as exc:  # noqa: BLE001 - closing a broken consumer
                        log.debug("closing the consumer: %s", exc)
            self._stop.wait(RECONNECT_SECONDS if failures else 0)

    def _set_connected(self, connected: bool) -> None:
        with self._lock:
            self._connected = connected
            pending = None
            if not connected:
                pending, self._pending = self._pending, None
        self.metrics.fold_in_up.set(1 if connected else 0)
        if pending is not None:  # handed over while connected, then the broker failed
            self.rebase(pending)

    def _position(self, consumer: Any, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            if tp.partition in self._next:
                consumer.seek(tp, self._next[tp.partition])
            elif self._from_start:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek_to_end(tp)

    def _assign(self, consumer: Any) -> bool:
        """Assign every partition of the topic, positioning new ones; False while the topic
        does not exist."""
        ids = sorted(consumer.partitions_for_topic(self.topic) or ())
        if not ids:
            return False
        known = {tp.partition for tp in self._partitions}
        if set(ids) != known:
            self._partitions = [TopicPartition(self.topic, p) for p in ids]
            consumer.assign(self._partitions)
            with self._lock:
                self._position(consumer, [tp for tp in self._partitions
                                          if tp.partition not in known])
            log.info("speed layer reading %s partitions %s", self.topic, ids)
        return True

    def _consume(self, consumer: Any) -> None:
        self._partitions = []
        refreshed = 0.0
        while not self._stop.is_set():
            if time.monotonic() - refreshed > PARTITIONS_REFRESH_SECONDS or not self._partitions:
                refreshed = time.monotonic()
                if not self._assign(consumer):
                    self._stop.wait(1.0)
                    continue
                self._set_connected(True)
            with self._lock:
                pending, self._pending = self._pending, None
                if self._reposition:
                    self._reposition = False
                    self._position(consumer, self._partitions)
            if pending is not None:
                self._switch(consumer, pending)
            model = self.manager.current  # taken before the poll: see rebase()
            self._apply(consumer.poll(timeout_ms=POLL_MS), model)
            self._update_lag(consumer)

    def _switch(self, consumer: Any, model: ServingModel) -> None:
        """Replay the events after `model`'s cut into it, then serve it."""
        cut = cut_of(model.manifest, self.topic)
        if cut is None:
            log.info("run %s names no Kafka positions on %s: its fold-in starts empty and "
                     "continues from the current positions", model.run_id, self.topic)
            self.manager.swap(model)
            return
        target = {tp: consumer.position(tp) for tp in self._partitions}
        with self._lock:
            self._next, self._from_start = dict(cut), True
            self._position(consumer, self._partitions)
        deadline = time.monotonic() + self.catch_up_seconds
        behind = self._partitions
        while not self._stop.is_set():
            behind = [tp for tp in self._partitions if consumer.position(tp) < target[tp]]
            if not behind or time.monotonic() >= deadline:
                break
            self._apply(consumer.poll(timeout_ms=POLL_MS), model)
        if behind:
            log.warning("run %s switched in before its fold-in caught up (%d partitions "
                        "behind); the rest follows live", model.run_id, len(behind))
        log.info("run %s: %d purchases after its cut folded in before the switch",
                 model.run_id, model.fold_in_events)
        self.manager.swap(model)

    def _apply(self, batches: dict[TopicPartition, list[Any]], model: ServingModel | None) -> None:
        for tp, records in batches.items():
            seen = self._seen.get(tp.partition, 0)
            for record in records:
                first_time = record.offset >= seen
                reason, event = classify_record(record.value, record.timestamp, self.limits)
                if reason is not None:
                    if first_time:
                        self.metrics.malformed.labels(Reason.code_of(reason)).inc()
                    continue
                assert event is not None
                folded = model is not None and model.apply_purchase(
                    event[USER_ID], event[PRODUCT_ID], event[QUANTITY]
                )
                if first_time:
                    (self.metrics.fold_in_events if folded else self.metrics.fold_in_skipped).inc()
            if records:
                self._seen[tp.partition] = max(seen, records[-1].offset + 1)
                self._newest_ms = records[-1].timestamp
                with self._lock:
                    self._next[tp.partition] = records[-1].offset + 1
        if model is not None and model is self.manager.current:
            self.metrics.fold_in_users.set(len(model.fold_ins))

    def _update_lag(self, consumer: Any) -> None:
        behind = 0
        for tp in self._partitions:
            high = consumer.highwater(tp)
            position = consumer.position(tp)
            if high is not None and position is not None:
                behind += max(0, high - position)
        self.metrics.lag_records.set(behind)
        newest = self._newest_ms
        lag = time.time() - newest / 1000 if behind and newest is not None else 0.0
        self.metrics.lag_seconds.set(max(0.0, lag))
