"""A clean stop on SIGTERM or Ctrl-C, wherever the signal lands.

Under spark-submit the JVM (SparkSubmit) is the parent process: `docker stop`, systemd and
schedulers signal it, not the Python driver. The JVM's own handlers would run its shutdown
hooks, which stop the SparkContext under the batch or training run in progress (traces, no
stop line). So the job replaces them, through Py4J, by a handler that calls back into the
driver and only sets the stop flag; Python's handlers do the same for a signal sent to the
driver itself (`python spark_app/main.py`, Ctrl-C, a kill of the process group).

Once the flag is set, the batch in progress finishes and is committed; a training run in
progress is abandoned (its Spark jobs, tagged TRAINING_TAG, are cancelled) and stays pending
in the ledger, so the next start runs it again. A second signal of the same kind from the same
side stops at once, for an operator who will not wait.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark import SparkContext
    from pyspark.sql import DataFrame

    from spark_app.stream.batch import Trainer
    from spark_app.stream.ledger import Ledger, TrainingRecord

log = logging.getLogger(__name__)

TRAINING_TAG = "recsys-training"  # Spark job tag of a training run's jobs (cancelled on stop)
INTERRUPT_ON_CANCEL = "spark.job.interruptOnCancel"  # SparkContext local property
CANCEL_EVERY_SECONDS = 0.5  # a run may start more jobs after the first cancel: cancel again
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def cancel_jobs_until(sc: SparkContext, tag: str, over: Callable[[float], bool]) -> None:
    """Cancel the Spark jobs tagged `tag` until `over(seconds)` (a wait of at most that long)
    says the work that starts them has ended: it may start more jobs after a cancel."""
    while True:
        try:
            sc.cancelJobsWithTag(tag)
        except Exception:  # noqa: BLE001 - the session may be going away: nothing to do
            return
        if over(CANCEL_EVERY_SECONDS):
            return


class TrainingAbandoned(Exception):
    """Raised by a trainer that a stop interrupted: the run stays pending in the ledger."""

    def __init__(self, sequence: int) -> None:
        super().__init__(f"training run {sequence} abandoned by the stop; it runs again at "
                         "the next start")


class StopFlag:
    """Set by SIGTERM/SIGINT (in the driver or in spark-submit's JVM); read by the job."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None  # the signal that set it, e.g. "SIGTERM"
        self._lock = threading.Lock()
        self._received: Counter[tuple[str, str]] = Counter()
        self._training: SparkContext | None = None
        self._training_over = threading.Event()
        self._jvm_handler: _JvmSignalHandler | None = None
        self._jvm_previous: list[tuple[Any, Any, Any]] = []  # (jvm, Signal, previous handler)

    def is_set(self) -> bool:
        return self.event.is_set()

    def request(self, reason: str, side: str = "python") -> None:
        """Set the flag (once); a repeated signal from the same side exits at once."""
        with self._lock:
            self._received[(side, reason)] += 1
            repeated = self._received[(side, reason)] > 1
            first = not self.event.is_set()
            if first:
                self.reason = reason
                self.event.set()
        if repeated:
            log.warning("%s received again: stopping now, without waiting", reason)
            os._exit(128 + signal.Signals[reason].value)
        if first:
            log.info("%s received: stopping after the batch in progress", reason)
            self._cancel_training()

    # --- the training run in progress -------------------------------------------------------
    def guard(self, trainer: Trainer) -> Trainer:
        """`trainer` with its Spark jobs tagged, so that a stop can cancel them; a run the stop
        interrupts (or that would start after it) raises TrainingAbandoned."""

        def train(events: DataFrame, record: TrainingRecord, ledger: Ledger
                  ) -> tuple[str | None, bool | None]:
            sc = events.sparkSession.sparkContext
            sc.addJobTag(TRAINING_TAG)
            # Cancelled tasks stop at their next record rather than by Thread.interrupt(),
            # which breaks file reads mid-way (stack traces; on HDFS, HDFS-1208). The streaming
            # engine turns interrupts on for the thread that runs the batch handler.
            interrupt = sc.getLocalProperty(INTERRUPT_ON_CANCEL)
            sc.setInterruptOnCancel(False)
            with self._lock:
                self._training = sc
                self._training_over.clear()
            try:
                if self.is_set():
                    raise TrainingAbandoned(record.sequence)
                return trainer(events, record, ledger)
            except Exception as exc:
                if self.is_set():
                    raise TrainingAbandoned(record.sequence) from exc
                raise
            finally:
                with self._lock:
                    self._training = None
                    self._training_over.set()
                sc.removeJobTag(TRAINING_TAG)
                sc.setLocalProperty(INTERRUPT_ON_CANCEL, interrupt)  # type: ignore[arg-type]

        return train

    def _cancel_training(self) -> None:
        def cancel() -> None:
            with self._lock:
                sc = self._training
            if sc is not None:
                cancel_jobs_until(sc, TRAINING_TAG, self._training_over.wait)

        threading.Thread(target=cancel, name="stop-training", daemon=True).start()

    # --- signal handlers ----------------------------------------------------------------------
    def install(self) -> None:
        """Python's handlers: SIGTERM and SIGINT sent to the driver process.

        Install again after a SparkContext starts: pyspark sets its own SIGINT handler then
        (it cancels every job and raises KeyboardInterrupt in the middle of whatever runs).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # In a thread: the main thread may hold a lock or be inside a Py4J call right now.
        name = signal.Signals(signum).name
        threading.Thread(target=self.request, args=(name, "python"), daemon=True).start()

    def install_jvm(self, gateway: Any) -> None:
        """The JVM's handlers: SIGTERM and SIGINT sent to spark-submit (or to the whole group).

        The JVM's own handlers (which run its shutdown hooks) are kept, restored by
        `uninstall_jvm` before the driver exits. A signal the JVM ignores (pyspark's launcher
        makes it ignore SIGINT) stays ignored.
        """
        from pyspark.java_gateway import ensure_callback_server_started

        if self._jvm_handler is not None:
            return
        ensure_callback_server_started(gateway)
        jvm = gateway.jvm
        self._jvm_handler = _JvmSignalHandler(self)
        for sig in SIGNALS:
            jsig = jvm.sun.misc.Signal(sig.name.removeprefix("SIG"))
            try:
                previous = jvm.sun.misc.Signal.handle(jsig, self._jvm_handler)
            except Exception as exc:  # noqa: BLE001 - Py4JJavaError: the JVM reserves it
                log.debug("JVM signal %s left alone: %s", sig.name, exc)
                continue
            self._jvm_previous.append((jvm, jsig, previous))

    def uninstall_jvm(self) -> None:
        """Give the JVM its own handlers back (the driver is about to exit)."""
        while self._jvm_previous:
            jvm, jsig, previous = self._jvm_previous.pop()
            try:
                jvm.sun.misc.Signal.handle(jsig, previous)
            except Exception:  # noqa: BLE001 - the JVM is already gone
                return


class _JvmSignalHandler:
    """A `sun.misc.SignalHandler` implemented in Python: the JVM calls it through Py4J."""

    def __init__(self, flag: StopFlag) -> None:
        self._flag = flag

    def handle(self, sig: Any) -> None:
        self._flag.request(f"SIG{sig.getName()}", "jvm")

    class Java:
        implements = ["sun.misc.SignalHandler"]
