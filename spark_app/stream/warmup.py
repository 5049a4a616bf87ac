"""The training code path warmed before a fresh job's first run.

A fresh JVM's first training run compiles the whole pipeline as it goes (Spark's generated
classes, the JIT's compiled methods, the Python workers' imports), so it takes several times a
warm run (benchmarks/RESULTS.md, "First run of a fresh job"). While the job accumulates its
first threshold, a `WarmUp` runs one training run on `training.warmup_events` synthetic events
in the same SparkSession, in a background thread, into a scratch folder under `paths.state`
that it deletes afterwards: nothing is published, the ledger and the id maps are not touched.

A real run never waits for it: when a run becomes due (or the job stops) before the warm-up is
over, its Spark jobs are cancelled and the real run starts at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from pyspark import InheritableThread
from pyspark.sql import DataFrame, SparkSession

from recsys_contract.config import AppConfig
from spark_app.storage import Storage, join
from spark_app.stream.stop import INTERRUPT_ON_CANCEL, cancel_jobs_until
from spark_app.training.synthetic import synthetic_events

if TYPE_CHECKING:
    from spark_app.stream.batch import Trainer
    from spark_app.stream.ledger import Ledger, TrainingRecord

log = logging.getLogger(__name__)

WARMUP_TAG = "recsys-warmup"  # Spark job tag of the warm-up's jobs (cancelled when a run is due)
WARMUP_DIR = "warmup"  # scratch folder under paths.state, deleted after the warm-up
# Shape of the synthetic events: users and products grow with the count, as in a real shop.
EVENTS_PER_USER = 20
EVENTS_PER_PRODUCT = 100
SEGMENTS = 8


def remove_leftovers(storage: Storage, state: str) -> None:
    """Delete a scratch folder that a job killed during its warm-up left behind (at start,
    whether or not this start warms up)."""
    storage.delete(join(state, WARMUP_DIR))


def warmup_config(cfg: AppConfig, scratch: str) -> AppConfig:
    """`cfg` with its results and state in `scratch`, and a verdict that accepts any model:
    a rejected run skips the recommendation and graph stages, which are to be warmed too."""
    return cfg.model_copy(update={
        "paths": cfg.paths.model_copy(
            update={"results": join(scratch, "results"), "state": join(scratch, "state")}),
        "evaluation": cfg.evaluation.model_copy(
            update={"accept_margin": 0.99, "rmse_margin": 0.99}),
    })


def warm_up(spark: SparkSession, cfg: AppConfig, scratch: str,
            storage: Storage | None = None) -> float:
    """One training run on `training.warmup_events` synthetic events into `scratch`, which is
    deleted afterwards (also on failure); returns the seconds it took."""
    from spark_app.training.pipeline import run_training

    storage = storage or Storage(spark)
    n = cfg.training.warmup_events
    events = synthetic_events(spark, n, max(2, n // EVENTS_PER_USER),
                              max(2, n // EVENTS_PER_PRODUCT), SEGMENTS, cfg.als.seed)
    started = time.perf_counter()
    try:
        run_training(spark, events, warmup_config(cfg, scratch), sequence=1,
                     event_counts={"training_set": n, "total_valid": n, "new_since_last_run": n},
                     storage=storage)
    finally:
        storage.delete(scratch)
    return time.perf_counter() - started


class WarmUp:
    """The warm-up in a background thread; `before(trainer)` cancels it when a run is due."""

    def __init__(self, spark: SparkSession, cfg: AppConfig, state: str, storage: Storage) -> None:
        self._spark = spark
        self._cfg = cfg
        self._scratch = join(state, WARMUP_DIR)
        self._storage = storage
        self._cancelled = threading.Event()
        self._thread = InheritableThread(target=self._run, name="training-warmup", daemon=True)

    @classmethod
    def of(cls, spark: SparkSession, cfg: AppConfig, state: str,
           storage: Storage) -> WarmUp | None:
        """The job's warm-up (not started), or None when `training.warmup_events` is 0 or the
        runner trains nothing."""
        if cfg.training.warmup_events == 0 or cfg.training.runner != "als":
            return None
        return cls(spark, cfg, state, storage)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        sc = self._spark.sparkContext
        sc.addJobTag(WARMUP_TAG)
        sc.setLocalProperty(INTERRUPT_ON_CANCEL, "false")  # as stop.guard: no broken reads
        n = self._cfg.training.warmup_events
        log.info("training warm-up: one run on %d synthetic events, nothing published", n)
        quiet = _QuietThread(self._thread.name)
        handlers = logging.getLogger().handlers
        for handler in handlers:
            handler.addFilter(quiet)
        try:
            seconds = warm_up(self._spark, self._cfg, self._scratch, self._storage)
            log.info("training warm-up done in %.1f s", seconds)
        except Exception as exc:  # noqa: BLE001 - a failed warm-up only leaves the JVM cold
            if self._cancelled.is_set():
                log.info("training warm-up cancelled: a run was due or the job stopped")
            else:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                log.warning("training warm-up failed (the first run will be slower): %s: %s",
                            type(exc).__name__, first)
        finally:
            sc.removeJobTag(WARMUP_TAG)
            for handler in handlers:
                handler.removeFilter(quiet)

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        """Whether the warm-up is over within `timeout` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def cancel(self) -> None:
        """Cancel the warm-up's Spark jobs until its thread is over (it cleans its scratch)."""
        if not self._thread.is_alive():
            return
        self._cancelled.set()
        cancel_jobs_until(self._spark.sparkContext, WARMUP_TAG, self.wait)

    def before(self, trainer: Trainer) -> Trainer:
        """`trainer`, which first cancels the warm-up if it is still running."""

        def train(events: DataFrame, record: TrainingRecord,
                  ledger: Ledger) -> tuple[str | None, bool | None]:
            if self.running():
                log.info("training run %d is due: cancelling the warm-up", record.sequence)
                self.cancel()
            return trainer(events, record, ledger)

        return train


class _QuietThread(logging.Filter):
    """Drops the INFO lines that the training run logs from the warm-up's thread: a reader of
    the job's log would take its run for a published one. Its warnings and this module's
    lines stay."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.threadName != self.thread_name or record.levelno >= logging.WARNING
                or record.name == __name__)
