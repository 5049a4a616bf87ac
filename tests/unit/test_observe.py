"""The job's metrics and status file from known ledgers and progress reports, the quarantine
counted by reason in the batch handler, and the status screen from a known snapshot."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infra.ports import free_ports
from producer.badevents import BAD_KINDS, make_bad_event
from recsys_contract.config import load_config
from recsys_contract.events import REASON_CODES, Reason
from recsys_contract.runs import EventCounts, KafkaSpan, Manifest, Metrics
from recsys_contract.status import STOPPED, JobStatus
from spark_app.observe.counts import kafka_offsets, processed_offsets, reason_counts
from spark_app.observe.metrics import JobMetrics
from spark_app.observe.runs import figures_of
from spark_app.observe.status import StatusPublisher
from spark_app.stream.batch import BatchProcessor, BatchSettings
from spark_app.stream.ledger import Ledger, TrainingRecord
from status.cli import gather
from status.report import Snapshot, render
from status.sources import Results, RunRow
from tests.promql import metric_names

KAFKA_TIME = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
OBSERVABILITY = Path(__file__).resolve().parents[2] / "infra" / "observability"
NOW = 1_796_000_000.0  # 2026-11-30T00:53:20Z


def samples(registry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def ledger(**changes) -> Ledger:
    done = (TrainingRecord(1, 100, 0, "threshold", "r1", True),
            TrainingRecord(2, 200, 0, "threshold", "r2", False))
    base = Ledger(last_batch_id=7, total_valid=250, total_quarantined=9, trained_through=200,
                  trainings=done, offsets={"0": [0, 130], "1": [0, 127]},
                  quarantined_by_reason={"malformed_json": 5, "oversized": 1})
    return replace(base, **changes)


def test_the_batch_handler_counts_every_bad_kind_under_its_reason_code(spark, tmp_path):
    now_ms = int(KAFKA_TIME.timestamp() * 1000)
    base = {"event_id": "e0", "user_id": "u1", "product_id": "p1", "quantity": 1,
            "timestamp": "2026-11-27T09:00:00Z"}
    bad = [make_bad_event(kind, base, now_ms=now_ms) for kind in BAD_KINDS]
    rows = [(b.value, "sales", i % 2, i // 2, KAFKA_TIME) for i, b in enumerate(bad)]
    rows.append((json.dumps(base).encode(), "sales", 0, 100, KAFKA_TIME))
    df = spark.createDataFrame(
        rows, "value binary, topic string, partition int, offset long, timestamp timestamp")
    cfg = load_config(overrides=["training.threshold=1000"])
    s = replace(BatchSettings.from_config(cfg), events_dir=str(tmp_path / "events"),
                quarantine_dir=str(tmp_path / "quarantine"), state_dir=str(tmp_path / "state"))
    processor = BatchProcessor(s, lambda *_: (None, None))
    processor.process(df, 0)
    expected = Counter(Reason.code_of(b.expected_reason) for b in bad)
    assert processor.ledger.quarantined_by_reason == dict(sorted(expected.items()))


def test_kafka_offsets_are_read_from_the_progress_sources_json():
    sources = [('{"sales":{"0":120,"1":80}}', '{"sales":{"0":150,"1":80}}'),
               ('{"sales":{"2":5}}', None), ("12", "13")]  # no latest: caught up; not Kafka
    assert kafka_offsets(sources) == {"sales": {"0": (120, 150), "1": (80, 80), "2": (5, 5)}}


def test_processed_offsets_take_the_furthest_of_ledger_and_progress():
    # partition 0: a transaction marker after offset 130; partition 1: the ledger is newer
    progress = {"0": (133, 140), "1": (100, 140)}
    assert processed_offsets(ledger(), progress) == {"0": 133, "1": 128}


def test_records_counted_before_reasons_were_are_unknown():
    assert reason_counts(ledger()) == {"malformed_json": 5, "oversized": 1, "unknown": 3}


def test_the_metrics_show_the_ledger_the_lag_and_the_last_runs():
    metrics = JobMetrics(lambda: ledger(pending_training=TrainingRecord(3, 300, 0, "threshold")),
                         threshold=100, clock=lambda: NOW)
    metrics.offsets({"sales": {"0": (131, 140), "1": (128, 128)}})
    metrics.batch_committed(0.4, NOW - 5)
    published = figures_of(manifest("r1", True, {"fit": 2.5, "total": 9.0}), metrics_of(True))
    rejected = figures_of(manifest("r2", False, {"fit": 3.0, "total": 4.0}), metrics_of(False))
    metrics.run_finished(published, 9.0)
    metrics.run_finished(rejected, 4.0)
    got = samples(metrics.registry)
    want = {
        ("recsys_job_events_stored_total", ()): 250,
        ("recsys_job_events_quarantined_total", (("reason", "malformed_json"),)): 5,
        ("recsys_job_events_quarantined_total", (("reason", "unknown"),)): 3,
        ("recsys_job_events_quarantined_total", (("reason", "price_invalid"),)): 0,
        ("recsys_job_events_until_next_run", ()): 50,
        ("recsys_job_runs_started_total", ()): 3,
        ("recsys_job_runs_published_total", ()): 1,
        ("recsys_job_runs_rejected_total", ()): 1,
        ("recsys_job_consumer_lag_records", (("partition", "0"), ("topic", "sales"))): 9,
        ("recsys_job_consumer_lag_records", (("partition", "1"), ("topic", "sales"))): 0,
        ("recsys_job_batches_total", ()): 1,
        ("recsys_job_batch_duration_seconds_count", ()): 1,
        ("recsys_job_last_batch_timestamp_seconds", ()): NOW - 5,
        ("recsys_job_last_run_accepted", ()): 0,
        ("recsys_job_last_run_model_metric", (("metric", "ndcg_at_k"),)): 0.1,
        ("recsys_job_last_published_run_model_metric", (("metric", "ndcg_at_k"),)): 0.3,
        ("recsys_job_last_published_run_baseline_metric", (("metric", "ndcg_at_k"),)): 0.2,
        ("recsys_job_last_published_run_age_seconds", ()): NOW - published.created_at,
        ("recsys_job_training_stage_duration_seconds", (("stage", "fit"),)): 3.0,
        ("recsys_job_training_run_duration_seconds_count", ()): 2,
    }
    assert {key: got.get(key) for key in want} == want
    reasons = {dict(labels)["reason"] for name, labels in got
               if name == "recsys_job_events_quarantined_total"}
    assert reasons == {*REASON_CODES, "unknown"}


def manifest(run_id: str, accepted: bool, timings: dict[str, float]) -> Manifest:
    return Manifest(run_id=run_id, sequence=int(run_id[1:]), created_at="2026-11-29T22:00:00Z",
                    accepted=accepted, reason="", events=EventCounts(100, 100, 100),
                    window_events=0, kafka=KafkaSpan("sales"), timings_seconds=timings)


def metrics_of(accepted: bool) -> Metrics:
    model = 0.3 if accepted else 0.1
    return Metrics(k=10, split="random", test_users=10, model={"ndcg_at_k": model},
                   baseline={"ndcg_at_k": 0.2}, accept_metric="ndcg_at_k", accept_margin=0.0,
                   accepted=accepted)


class FakeStorage:
    def __init__(self) -> None:
        self.files: dict[str, list[str]] = {}

    def write_atomic(self, path: str, text: str) -> None:
        self.files.setdefault(path, []).append(text)


def test_the_status_file_is_written_whole_and_ends_stopped():
    storage = FakeStorage()
    publisher = StatusPublisher(storage, "file:/r", topic="sales", threshold=100,  # type: ignore[arg-type]
                                clock=lambda: NOW)
    publisher.update(ledger=ledger(), progress={"0": (133, 140)}, batch_at=NOW - 2)
    publisher.close()
    last = JobStatus.from_json(storage.files["file:/r/status.json"][-1])
    assert last == replace(status_of_ledger(), state=STOPPED)


def status_of_ledger() -> JobStatus:
    return JobStatus(
        updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW)), state="running",
        topic="sales", processed_offsets={"0": 133, "1": 128}, last_batch_id=7,
        events_stored=250, events_quarantined=9,
        quarantined_by_reason={"malformed_json": 5, "oversized": 1, "unknown": 3}, threshold=100,
        events_until_next_run=50, runs_started=2, runs_published=1, runs_rejected=1,
        training_run=None, last_batch_at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                       time.gmtime(NOW - 2)),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW)))


def test_a_job_that_never_started_leaves_the_last_status_file_alone():
    storage = FakeStorage()
    StatusPublisher(storage, "file:/r", topic="sales", threshold=100).close()  # type: ignore[arg-type]
    assert storage.files == {}


def test_status_of_a_ledger_is_what_the_file_reads_back():
    state_status = status_of_ledger()
    assert JobStatus.from_json(state_status.to_json()) == state_status


SCREEN = """\
recsys-stream status at 2026-11-30T00:53:20Z
results   /r
topic     sales on h:9092
job       running, last batch 7 2 s ago; status written 0 s ago

partition    end offset     processed         lag
        0           140           133           7
        1           128           128           0
    total           268           261           7

events    250 stored, 9 quarantined (3.47%)
training  50 events until the next run (threshold 100)
runs      2 started, 1 published, 1 rejected

quarantine by reason
  malformed_json                    5
  unknown                           3
  oversized                         1

last runs (newest first; * = latest, served)
  run                       verdict    metric            model  baseline    events  seconds
  r2                        rejected   ndcg_at_k        0.1000    0.2000       100      4.0
* r1                        published  ndcg_at_k        0.3000    0.2000       100      9.0
"""


def snapshot(**changes) -> Snapshot:
    runs = [RunRow(manifest("r2", False, {"total": 4.0}), metrics_of(False)),
            RunRow(manifest("r1", True, {"total": 9.0}), metrics_of(True))]
    base = Snapshot(results="/r", topic="sales", bootstrap_servers="h:9092",
                    status=status_of_ledger(), end_offsets={"0": 140, "1": 128}, runs=runs,
                    latest="r1")
    return replace(base, **changes)


def test_the_status_screen_of_a_known_state():
    assert render(snapshot(), NOW) == SCREEN


def test_with_the_broker_down_one_line_says_so_and_the_rest_is_shown():
    screen = render(snapshot(end_offsets=None, broker_error="no broker answered"), NOW)
    about_broker = [line for line in screen.splitlines() if "broker" in line]
    assert (about_broker, "250 stored" in screen, "* r1" in screen) == (
        ["broker    no broker answered: end offsets and lag unknown"], True, True)


def test_gather_with_no_broker_still_reads_the_published_files(tmp_path):
    (tmp_path / "status.json").write_text(status_of_ledger().to_json())
    port = free_ports(1)[0]  # nothing listens there
    got = gather(Results(str(tmp_path)), f"127.0.0.1:{port}", "sales", runs=5,
                 timeout_seconds=1)
    assert (got.broker_error is not None, got.status) == (True, status_of_ledger())


# --- the dashboard and the alert rules (checked against a real scrape in
# tests/integration/test_observe.py) -------------------------------------------------------------

def test_promql_names_leave_out_functions_labels_ranges_and_keywords():
    expr = ('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y z"}[$__rate_interval]))) '
            '> 1e3 and on(job) b offset 5m unless bool c:d')
    assert metric_names(expr) == {"a_bucket", "b", "c:d"}


def test_every_dashboard_panel_and_alert_rule_reads_a_metric():
    exprs = dashboard_exprs() + alert_exprs()
    assert [e for e in exprs if not metric_names(e)] == []


def test_every_job_metric_the_dashboard_and_rules_read_is_in_the_jobs_registry():
    metrics = JobMetrics(ledger, threshold=100, clock=lambda: NOW)
    metrics.offsets({"sales": {"0": (131, 140)}})
    metrics.run_finished(figures_of(manifest("r1", True, {"fit": 2.5}), metrics_of(True)), 9.0)
    text = generate_latest(metrics.registry).decode()
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    read = {name for e in dashboard_exprs() + alert_exprs() for name in metric_names(e)}
    assert {n for n in read if n.startswith("recsys_job_")} - exported == set()


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((OBSERVABILITY / "dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p.get("targets") for p in panels), "a panel without a query"
    return [t["expr"] for p in panels for t in p["targets"]]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [r["expr"] for group in rules["groups"] for r in group["rules"]]
