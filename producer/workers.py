"""Several producer processes behind one transport (--workers N).

kafka-python is pure Python: its send path and its I/O thread share one GIL, so one process
tops out near one core. This transport routes each record by key to one of N worker
processes, each with its own KafkaTransport, so a user's events still go through a single
producer, in order. Workers report their acknowledgements through shared counters.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import time
from typing import Any

from producer.errors import DeliveryError
from producer.transport import DeliveryStats, KafkaTransport, ProducerSettings
from recsys_contract.errors import BrokerUnavailableError, RecsysError

log = logging.getLogger(__name__)

INBOX_SLOTS = 32  # chunks queued per worker before send_many blocks (backpressure)
_POLL_S = 0.5
_IDLE_S = 0.05  # an idle worker refreshes its counters this often


def _worker_main(
    index: int,
    bootstrap_servers: str,
    topic: str,
    settings: ProducerSettings,
    connect_timeout_s: float,
    log_level: int,
    inbox: Any,
    counters: Any,
    results: Any,
) -> None:
    """One worker: send what arrives in `inbox` until None, then flush and report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s worker-{index} "
                        "%(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL if log_level > logging.DEBUG else
                                        logging.DEBUG)
    parent = os.getppid()
    try:
        transport = KafkaTransport(bootstrap_servers, topic, settings,
                                   connect_timeout_s=connect_timeout_s,
                                   client_id=f"sales-simulator-{index}")
    except RecsysError as exc:
        results.put(("error", index, str(exc)))
        return
    results.put(("ready", index, ""))
    stats = transport.stats
    while True:
        try:
            item = inbox.get(timeout=_IDLE_S)
        except queue.Empty:
            if os.getppid() != parent:  # the parent died without saying goodbye
                break
            counters[2 * index], counters[2 * index + 1] = stats.acked, stats.failed
            continue
        if item is None:
            break
        while stats.in_flight > settings.max_unconfirmed:
            time.sleep(0.002)
        transport.send_many(*item)
        counters[2 * index], counters[2 * index + 1] = stats.acked, stats.failed
    transport.close()
    counters[2 * index], counters[2 * index + 1] = stats.acked, stats.failed
    results.put(("done", index, stats.errors))


class WorkerPoolTransport:
    """N producer processes; same interface as KafkaTransport (stats, send_many, close)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        settings: ProducerSettings | None = None,
        *,
        workers: int = 2,
        connect_timeout_s: float = 15.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.topic = topic
        self.settings = settings or ProducerSettings()
        self.stats = DeliveryStats()
        self._n = workers
        self._finished = False
        context = multiprocessing.get_context("spawn")
        self._counters = context.Array("q", 2 * workers, lock=False)
        self._inboxes = [context.Queue(maxsize=INBOX_SLOTS) for _ in range(workers)]
        for inbox in self._inboxes:
            # Exit must never wait on a pipe nobody reads; close() waits for the workers'
            # "done", which they send only after reading everything.
            inbox.cancel_join_thread()
        self._results = context.Queue()
        level = logging.getLogger().getEffectiveLevel()
        self._procs = [
            context.Process(
                target=_worker_main,
                args=(i, bootstrap_servers, topic, self.settings, connect_timeout_s, level,
                      self._inboxes[i], self._counters, self._results),
                name=f"producer-worker-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        for proc in self._procs:
            proc.start()
        self._await("ready", connect_timeout_s + 60)
        self.stats.started = time.monotonic()

    def _await(self, kind: str, timeout_s: float) -> dict[int, Any]:
        """Collect one `kind` message per worker; errors and deaths raise."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        while len(got) < self._n:
            try:
                what, index, payload = self._results.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [p.name for p in self._procs if not p.is_alive()
                        and self._procs.index(p) not in got]
                if dead or time.monotonic() > deadline:
                    self._kill()
                    raise DeliveryError(f"producer workers {dead or 'all'} did not report "
                                        f"'{kind}' within {timeout_s:.0f} s") from None
                continue
            if what == "error":
                self._kill()
                raise BrokerUnavailableError(payload)
            if what == kind:
                got[index] = payload
        return got

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (for CPU accounting)."""
        return [p.pid for p in self._procs if p.pid is not None]

    def _refresh(self) -> None:
        counters = self._counters[:]
        self.stats.acked = sum(counters[0::2])
        self.stats.failed = sum(counters[1::2])

    def send_many(self, keys: list[bytes | None], values: list[bytes]) -> None:
        """Route each record by key to its worker (a key always goes to the same one)."""
        n = self._n
        bucket_keys: list[list[bytes | None]] = [[] for _ in range(n)]
        bucket_values: list[list[bytes]] = [[] for _ in range(n)]
        spread = self.stats.sent
        for key, value in zip(keys, values, strict=True):
            spread += 1
            i = hash(key) % n if key is not None else spread % n
            bucket_keys[i].append(key)
            bucket_values[i].append(value)
        for i in range(n):
            if bucket_values[i]:
                self._put(i, (bucket_keys[i], bucket_values[i]))
        self.stats.sent += len(values)
        self.stats.value_bytes += sum(map(len, values))
        self._refresh()

    def _put(self, index: int, item: Any) -> None:
        while True:
            try:
                self._inboxes[index].put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if not self._procs[index].is_alive():
                    raise DeliveryError(f"producer worker {index} died") from None

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every record sent so far is acknowledged or failed; False on timeout."""
        deadline = time.monotonic() + (300.0 if timeout_s is None else timeout_s)
        self._refresh()
        while self.stats.in_flight > 0 and time.monotonic() < deadline:
            if not all(p.is_alive() for p in self._procs):
                break
            time.sleep(0.01)
            self._refresh()
        self.stats.finished = time.monotonic()
        return self.stats.in_flight == 0

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush, then let the workers close their producers and exit."""
        if self._finished:
            return
        self._finished = True
        self.flush(timeout_s)
        try:
            for i in range(self._n):
                self._put(i, None)
            done = self._await("done", timeout_s + 30)
        except DeliveryError as exc:
            log.error("%s", exc)
            done = {}
        for errors in done.values():
            for name, count in errors.items():
                self.stats.errors[name] = self.stats.errors.get(name, 0) + count
        for proc in self._procs:
            proc.join(timeout=10)
        self._kill()
        self._refresh()
        self.stats.finished = time.monotonic()

    def _kill(self) -> None:
        """Stop workers still running."""
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)

    def __enter__(self) -> WorkerPoolTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
