"""Which run is served, and how a new one replaces it (after Oryx's ALSServingModelManager).

`ModelManager.current` is the one reference every request reads once; `swap` replaces it with a
fully built model in one assignment. `RunWatcher` polls the `latest` pointer in a thread of its
own, loads and checks a new run beside the served one, and hands the built model on (to the
speed layer, which replays the events after the run's cut into it before swapping, or straight
to `swap`). A run that cannot be served is logged and skipped; the served one stays.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from recsys_contract.errors import RunFormatError
from serve.errors import RunLoadError, RunRejectedError
from serve.files import ResultsReader
from serve.loading import latest_run_id, load_run
from serve.metrics import ServeMetrics
from serve.model import ServingModel

log = logging.getLogger(__name__)

# A run that could not be loaded is tried again after this long (a half-written run on a
# filesystem without atomic renames may complete), not at every poll.
RETRY_REFUSED_SECONDS = 30.0


class ModelManager:
    """Holds the served model; requests read `current` once and use only that object."""

    def __init__(self, metrics: ServeMetrics) -> None:
        self.current: ServingModel | None = None
        self._metrics = metrics

    def swap(self, model: ServingModel) -> None:
        """Serve `model` from now on (one reference assignment)."""
        previous = self.current
        self.current = model
        self._metrics.switched(model.run_id, len(model.user_row), len(model.product_ids))
        self._metrics.fold_in_users.set(len(model.fold_ins))
        log.info(
            "now serving run %s (was %s)", model.run_id, previous.run_id if previous else "none"
        )


class RunWatcher:
    """Polls `latest` and hands each new, servable run to `handoff` as a built ServingModel."""

    def __init__(
        self,
        reader: ResultsReader,
        handoff: Callable[[ServingModel], None],
        metrics: ServeMetrics,
        *,
        max_fold_in_users: int,
        poll_seconds: float,
        rank_ahead_n: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.handoff = handoff
        self.metrics = metrics
        self.max_fold_in_users = max_fold_in_users
        self.poll_seconds = poll_seconds
        self.rank_ahead_n = rank_ahead_n
        self.clock = clock
        self.handed: str | None = None  # the run last handed on
        self.refused: dict[str, float] = {}  # run id -> when to try it again
        self._pointer_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-watcher", daemon=True)
        self._ranking = threading.Event()  # set: end the ranking ahead in progress
        self._ranker: threading.Thread | None = None

    def check(self) -> str:
        """One poll: load and hand on the run `latest` names if it is new. Returns what
        happened: unchanged, no_run, loaded, rejected, invalid or waiting (refused earlier)."""
        try:
            run_id = latest_run_id(self.reader)
        except (RunFormatError, OSError) as exc:
            if str(exc) != self._pointer_error:
                log.warning("cannot read the latest pointer: %s", exc)
                self._pointer_error = str(exc)
            return "invalid"
        self._pointer_error = None
        if run_id is None:
            return "no_run"
        if run_id == self.handed:
            return "unchanged"
        retry_at = self.refused.get(run_id)
        if retry_at is not None and self.clock() < retry_at:
            return "waiting"
        started = time.perf_counter()
        try:
            model = ServingModel(
                load_run(self.reader, run_id), max_fold_in_users=self.max_fold_in_users
            )
        except Exception as exc:  # noqa: BLE001 - whatever a run holds, the served one stays
            outcome = "rejected" if isinstance(exc, RunRejectedError) else "invalid"
            if retry_at is None:
                reason = exc if isinstance(exc, RunLoadError) else repr(exc)
                log.warning("not serving run %s (%s): %s; keeping %s", run_id, outcome, reason,
                            self.handed or "no run")
            self.refused[run_id] = self.clock() + RETRY_REFUSED_SECONDS
            self.metrics.reloads.labels(outcome).inc()
            return outcome
        self.refused.pop(run_id, None)
        self.handed = run_id
        self.metrics.reloads.labels("loaded").inc()
        self.metrics.reload_seconds.set(time.perf_counter() - started)
        log.info("loaded run %s in %.2f s", run_id, time.perf_counter() - started)
        self.handoff(model)
        if self.rank_ahead_n:
            self._rank_ahead(model)
        return "loaded"

    def _rank_ahead(self, model: ServingModel) -> None:
        """Rank the new run's users ahead of requests in a thread of its own, so that the
        next run is not held up; a newer run (or stop) ends the older one's ranking."""
        self._ranking.set()
        ranking = self._ranking = threading.Event()

        def rank() -> None:
            started = time.perf_counter()
            self.metrics.ranked_ahead_users.set(0)
            ranked = model.rank_ahead(self.rank_ahead_n, ranking)
            if ranking.is_set():
                return
            self.metrics.rank_ahead_seconds.set(time.perf_counter() - started)
            self.metrics.ranked_ahead_users.set(ranked)
            log.info("ranked the top %d of %d users of run %s ahead of requests in %.1f s",
                     self.rank_ahead_n, ranked, model.run_id, time.perf_counter() - started)

        self._ranker = threading.Thread(target=rank, name="rank-ahead", daemon=True)
        self._ranker.start()

    def _loop(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # the watcher must outlive any one poll (logged with its trace)
                log.exception("the run watcher's poll failed; trying again")
            if self._stop.wait(self.poll_seconds):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._ranking.set()
        for thread in (self._thread, self._ranker):
            if thread is not None and thread.is_alive():
                thread.join(timeout)

    def wait_ranked(self, timeout: float) -> bool:
        """Whether the ranking ahead of the last loaded run is over within `timeout` s."""
        if self._ranker is not None:
            self._ranker.join(timeout)
        return self._ranker is None or not self._ranker.is_alive()
