"""The streaming job's Prometheus metrics (GET /metrics on `metrics.host:metrics.port` of the
driver), in a registry of their own; the style of serve/metrics.py.

Counters of events and runs are the ledger's, read at each scrape: they count since the job's
first start and survive restarts. Every label has a bounded set of values: a quarantine reason
code, a Kafka topic and partition, a training stage, an accept metric's name; never an id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from recsys_contract.events import REASON_CODES
from recsys_contract.status import UNKNOWN_REASON
from spark_app.observe.counts import KafkaOffsets, reason_counts, runs_by_outcome
from spark_app.observe.runs import RunFigures
from spark_app.stream.ledger import Ledger
from spark_app.stream.threshold import events_until_next_run

PREFIX = "recsys_job"
# A batch validates, stores and commits its records (a training run it starts is not in it).
BATCH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RUN_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


class JobMetrics:
    """The metric objects; `ledger` is called at each scrape for the job's counters."""

    def __init__(self, ledger: Callable[[], Ledger], threshold: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # the driver's Python process
        r = self.registry
        self._published_at: float | None = None
        r.register(_LedgerCollector(ledger, threshold, lambda: self._published_at, clock))
        self.batches = Counter(f"{PREFIX}_batches", "Micro-batches committed by this process",
                               registry=r)
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_duration_seconds", "Time to validate, store and commit a "
            "micro-batch (training runs it starts excluded)", buckets=BATCH_BUCKETS, registry=r)
        self.last_batch = Gauge(f"{PREFIX}_last_batch_timestamp_seconds",
                                "When the last micro-batch was committed", registry=r)
        labels = ("topic", "partition")
        self.lag = Gauge(f"{PREFIX}_consumer_lag_records", "Records on the broker the query "
                         "has not processed (latest offset minus processed offset), as of the "
                         "last progress report", labels, registry=r)
        self.latest_offset = Gauge(f"{PREFIX}_kafka_latest_offset", "The partition's latest "
                                   "offset on the broker, as of the last progress report",
                                   labels, registry=r)
        self.processed_offset = Gauge(f"{PREFIX}_kafka_processed_offset", "The next offset "
                                      "the query reads in the partition", labels, registry=r)
        self.training = Gauge(f"{PREFIX}_training_in_progress",
                              "1 while a training run is running", registry=r)
        self.run_seconds = Histogram(f"{PREFIX}_training_run_duration_seconds", "Wall time of "
                                     "each training run this process finished", buckets=RUN_BUCKETS,
                                     registry=r)
        self.stage_seconds = Gauge(f"{PREFIX}_training_stage_duration_seconds", "Stage timings "
                                   "of the last finished run (manifest timings_seconds)",
                                   ("stage",), registry=r)
        self.last_accepted = Gauge(f"{PREFIX}_last_run_accepted", "1 if the last finished run "
                                   "was accepted and published, 0 if it was rejected", registry=r)
        self.last_sequence = Gauge(f"{PREFIX}_last_run_sequence",
                                   "Sequence number of the last finished run", registry=r)
        self.last_model = Gauge(f"{PREFIX}_last_run_model_metric", "The last finished run's "
                                "accept metric, for the model", ("metric",), registry=r)
        self.last_baseline = Gauge(f"{PREFIX}_last_run_baseline_metric", "The last finished "
                                   "run's accept metric, for its baseline", ("metric",), registry=r)
        self.published_model = Gauge(f"{PREFIX}_last_published_run_model_metric", "The last "
                                     "published run's accept metric, for the model", ("metric",),
                                     registry=r)
        self.published_baseline = Gauge(f"{PREFIX}_last_published_run_baseline_metric", "The last "
                                        "published run's accept metric, for its baseline",
                                        ("metric",), registry=r)
        self.published_sequence = Gauge(f"{PREFIX}_last_published_run_sequence",
                                        "Sequence number of the last published run", registry=r)
        self.published_time = Gauge(f"{PREFIX}_last_published_run_timestamp_seconds",
                                    "When the last published run was created", registry=r)

    # --- what the observer reports ----------------------------------------------------------
    def batch_committed(self, seconds: float, now: float) -> None:
        self.batches.inc()
        self.batch_seconds.observe(seconds)
        self.last_batch.set(now)

    def offsets(self, offsets: KafkaOffsets) -> None:
        """Lag per partition from a progress report: the latest offset on the broker minus the
        end offset of the batch just processed."""
        for topic, partitions in offsets.items():
            for partition, (end, latest) in partitions.items():
                self.latest_offset.labels(topic, partition).set(latest)
                self.processed_offset.labels(topic, partition).set(end)
                self.lag.labels(topic, partition).set(max(0, latest - end))

    def run_finished(self, figures: RunFigures, seconds: float | None) -> None:
        if seconds is not None:
            self.run_seconds.observe(seconds)
        self.stage_seconds.clear()
        for stage, value in figures.timings.items():
            self.stage_seconds.labels(stage).set(value)
        self.last_accepted.set(1 if figures.accepted else 0)
        self.last_sequence.set(figures.sequence)
        _set_one(self.last_model, figures.accept_metric, figures.model)
        _set_one(self.last_baseline, figures.accept_metric, figures.baseline)
        if figures.accepted:
            self.published(figures)

    def published(self, figures: RunFigures) -> None:
        _set_one(self.published_model, figures.accept_metric, figures.model)
        _set_one(self.published_baseline, figures.accept_metric, figures.baseline)
        self.published_sequence.set(figures.sequence)
        self.published_time.set(figures.created_at)
        self._published_at = figures.created_at

    def serve(self, host: str, port: int) -> Any:
        """Start the HTTP endpoint (a daemon thread); returns the server, for `shutdown()`."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server


def _set_one(gauge: Gauge, metric: str, value: float | None) -> None:
    """Hold one series, the accept metric's (a changed accept metric replaces the old one)."""
    gauge.clear()
    gauge.labels(metric).set(float("nan") if value is None else value)


class _LedgerCollector(Collector):
    """The ledger's counters, read at scrape time."""

    def __init__(self, ledger: Callable[[], Ledger], threshold: int,
                 published_at: Callable[[], float | None], clock: Callable[[], float]) -> None:
        self._ledger = ledger
        self._threshold = threshold
        self._published_at = published_at
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        ledger = self._ledger()
        yield CounterMetricFamily(f"{PREFIX}_events_stored", "Valid events stored since the "
                                  "job's first start", value=ledger.total_valid)
        quarantined = CounterMetricFamily(
            f"{PREFIX}_events_quarantined", "Records quarantined since the job's first start, "
            f"by reason code ({UNKNOWN_REASON}: counted before reasons were)", labels=["reason"])
        counts = {code: 0 for code in REASON_CODES} | reason_counts(ledger)
        for code, count in counts.items():
            quarantined.add_metric([code], count)
        yield quarantined
        yield GaugeMetricFamily(
            f"{PREFIX}_events_until_next_run", "Valid events the next threshold run still needs",
            value=events_until_next_run(ledger.trained_through, ledger.total_valid,
                                        self._threshold))
        yield GaugeMetricFamily(f"{PREFIX}_training_threshold_events",
                                "training.threshold: new valid events per run",
                                value=self._threshold)
        started, published, rejected = runs_by_outcome(ledger)
        for name, value, what in (("started", started, "decided (recorded before they start)"),
                                  ("published", published, "accepted and published"),
                                  ("rejected", rejected, "rejected against their baseline")):
            yield CounterMetricFamily(f"{PREFIX}_runs_{name}", f"Training runs {what}",
                                      value=value)
        published_at = self._published_at()
        if published_at is not None:
            yield GaugeMetricFamily(f"{PREFIX}_last_published_run_age_seconds",
                                    "Seconds since the last published run was created",
                                    value=max(0.0, self._clock() - published_at))
