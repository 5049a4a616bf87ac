"""The server's Prometheus metrics (GET /metrics), in a registry of its own.

Every label has a bounded set of values: the route *template* (`/recommendations/{user_id}`,
never the id), the method, the status code, a reload outcome, a quarantine reason code. The
loaded run's id is the one exception, as an info-style gauge that holds only the current run.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

PREFIX = "recsys_serve"
# Request latency buckets (seconds): a recommendation takes well under a millisecond of work.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
UNMATCHED = "unmatched"  # route label of requests no route matched (404s)
RELOAD_OUTCOMES = ("loaded", "rejected", "invalid")


class ServeMetrics:
    """The metric objects, created once per server (or test) in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes and friends
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered, by route template, method, status",
            ("route", "method", "status"), registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds", "Time to answer a request, by route template",
            ("route",), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.run_info = Gauge(
            f"{PREFIX}_run_info", "1 for the run being served (label: its id)", ("run_id",),
            registry=r,
        )
        self.run_loaded = Gauge(
            f"{PREFIX}_run_loaded_timestamp_seconds", "When the served run was switched in",
            registry=r,
        )
        self.run_users = Gauge(f"{PREFIX}_run_users", "Users of the served run", registry=r)
        self.run_products = Gauge(
            f"{PREFIX}_run_products", "Products with factors in the served run", registry=r
        )
        self.reloads = Counter(
            f"{PREFIX}_reloads", "Runs the watcher tried to load, by outcome "
            "(loaded, rejected: accepted false, invalid: half-written or corrupt)",
            ("outcome",), registry=r,
        )
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(outcome)
        self.reload_seconds = Gauge(
            f"{PREFIX}_reload_duration_seconds", "Time the last successful load took", registry=r
        )
        self.rank_ahead_seconds = Gauge(
            f"{PREFIX}_rank_ahead_duration_seconds",
            "Time the last run's ranking ahead of requests took (serve.rank_ahead_n)", registry=r
        )
        self.ranked_ahead_users = Gauge(
            f"{PREFIX}_ranked_ahead_users", "Users of the last loaded run ranked ahead",
            registry=r,
        )
        self.fold_in_events = Counter(
            f"{PREFIX}_fold_in_events", "Valid purchases read from the topic and folded in "
            "(each record once; replays after a new run not counted)", registry=r,
        )
        self.fold_in_skipped = Counter(
            f"{PREFIX}_fold_in_skipped", "Valid purchases not folded in: serve.fold_in_max_users "
            "reached, or no run loaded yet", registry=r,
        )
        self.malformed = Counter(
            f"{PREFIX}_fold_in_malformed", "Records the job quarantines, skipped by the speed "
            "layer, by reason code", ("reason",), registry=r,
        )
        self.fold_in_users = Gauge(
            f"{PREFIX}_fold_in_users", "Users with fold-in state in the served run", registry=r
        )
        self.lag_records = Gauge(
            f"{PREFIX}_fold_in_lag_records", "Records on the topic the speed layer has not read",
            registry=r,
        )
        self.lag_seconds = Gauge(
            f"{PREFIX}_fold_in_lag_seconds", "Age of the newest record read, while records wait "
            "(0 when caught up)", registry=r,
        )
        self.fold_in_up = Gauge(
            f"{PREFIX}_fold_in_up", "1 while the speed layer is connected to the broker",
            registry=r,
        )

    def switched(self, run_id: str, users: int, products: int) -> None:
        """Record that `run_id` is now served."""
        self.run_info.clear()
        self.run_info.labels(run_id).set(1)
        self.run_loaded.set(time.time())
        self.run_users.set(users)
        self.run_products.set(products)
