"""Watching the real job: one run of the entrypoint (a subprocess, its metrics endpoint and
Spark's UI on free ports) over valid events and one bad event of every kind, until it has
caught up and published a run; then its scrape, Spark's servlet, the dashboard and alert rules,
and scripts/status are checked against what was produced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from infra.ports import free_ports
from infra.wait import wait_until
from producer.badevents import BAD_KINDS, make_bad_event
from recsys_contract.events import REASON_CODES, Reason
from recsys_contract.runs import LATEST, MANIFEST, METRICS, RUNS_DIR, Manifest, Metrics
from tests.kafka_helpers import create_topic, sales_event, send_all
from tests.promql import metric_names

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "infra" / "observability"
TOPIC = "observed"
VALID = 1_200
# Spark's streaming metrics of the job's query ("sales-ingest"), namespace "recsys"
SPARK_STREAMING = tuple(
    f"metrics_recsys_driver_spark_streaming_sales_ingest_{name}_Value"
    for name in ("inputRate_total", "processingRate_total", "latency"))


@dataclass
class Observed:
    results: Path
    bootstrap: str
    bad_reasons: Counter
    end_offsets: dict[str, int]
    scrape: dict[tuple[str, tuple], float]
    scrape_names: set[str]
    spark_names: set[str]
    status_running: str
    status_stopped: str
    exit_code: int
    log: str


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def parse(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def names_in(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def broker_end_offsets(bootstrap: str) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(TOPIC, p) for p in consumer.partitions_for_topic(TOPIC)]
        return {str(tp.partition): n for tp, n in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def status_screen(results: Path, bootstrap: str) -> str:
    done = subprocess.run([str(REPO / "scripts" / "status"), "--results", str(results),
                           "--bootstrap-servers", bootstrap, "--topic", TOPIC, "--timeout", "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def observed(kafka, tmp_path_factory) -> Observed:
    tmp = tmp_path_factory.mktemp("observe")
    bootstrap = kafka.bootstrap_servers
    create_topic(bootstrap, TOPIC, partitions=2)
    now_ms = int(time.time() * 1000)
    bad = [make_bad_event(kind, sales_event(i), variant=i, now_ms=now_ms)
           for i, kind in enumerate(BAD_KINDS)]
    send_all(bootstrap, TOPIC, [sales_event(i) for i in range(VALID)] + [b.value for b in bad])
    metrics_port, ui_port = free_ports(2)
    config = {
        # 1,214 records: more than one batch, the lag seen between them
        "kafka": {"bootstrap_servers": bootstrap, "topic": TOPIC, "max_offsets_per_trigger": 1000},
        "stream": {"trigger_interval_seconds": 0},
        "training": {"threshold": 1_000},
        "paths": {"results": str(tmp / "results"), "state": str(tmp / "state")},
        "als": {"rank": 2, "max_iter": 2},
        "graph": {"engine": "dataframe"},  # no GraphFrames job start for 100 pairs
        "selection": {"every_n_runs": 0},
        # tiny data: accept on coverage, which the model wins, so that the run is published
        "evaluation": {"accept_metric": "coverage", "accept_margin": 0.99},
        "metrics": {"port": metrics_port},
        "spark": {"shuffle_partitions": 2,
                  "extra_conf": {"spark.ui.enabled": "true", "spark.ui.port": str(ui_port),
                                 # a short-lived driver: the quick JIT compiler only
                                 "spark.driver.extraJavaOptions":
                                     "-XX:+UseParallelGC -XX:TieredStopAtLevel=1"}},
    }
    (tmp / "job.yaml").write_text(yaml.safe_dump(config))
    log = tmp / "job.log"
    job = subprocess.Popen(
        [sys.executable, str(REPO / "spark_app" / "main.py"), "--config", str(tmp / "job.yaml")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log.open("wb"),
        stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        def caught_up() -> dict | None:
            if job.poll() is not None:
                raise AssertionError(f"the job exited early:\n{log.read_text()[-4000:]}")
            try:
                scrape = parse(get(endpoint))
            except OSError:
                return None
            lag = [v for (name, _), v in scrape.items()
                   if name == "recsys_job_consumer_lag_records"]
            stored = scrape.get(("recsys_job_events_stored_total", ()))
            published = scrape.get(("recsys_job_runs_published_total", ()))
            done = stored == VALID and published == 1 and len(lag) == 2 and not any(lag)
            return scrape if done else None

        wait_until(caught_up, 600, f"the job to catch up and publish a run (log: {log})", 1.0)
        text = get(endpoint)
        spark_text = get(f"http://127.0.0.1:{ui_port}/metrics/prometheus")
        status_running = status_screen(tmp / "results", bootstrap)
        os.killpg(job.pid, signal.SIGTERM)
        code = job.wait(timeout=180)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
    return Observed(
        results=tmp / "results", bootstrap=bootstrap,
        bad_reasons=Counter(Reason.code_of(b.expected_reason) for b in bad),
        end_offsets=broker_end_offsets(bootstrap),
        scrape=parse(text), scrape_names=names_in(text), spark_names=names_in(spark_text),
        status_running=status_running, status_stopped=status_screen(tmp / "results", bootstrap),
        exit_code=code, log=log.read_text())


def test_the_scrape_counts_what_was_produced_and_shows_no_lag(observed: Observed):
    s = observed.scrape
    quarantined = {dict(labels)["reason"]: v for (name, labels), v in s.items()
                   if name == "recsys_job_events_quarantined_total"}
    lag = {dict(labels)["partition"]: v for (name, labels), v in s.items()
           if name == "recsys_job_consumer_lag_records"}
    processed = {dict(labels)["partition"]: v for (name, labels), v in s.items()
                 if name == "recsys_job_kafka_processed_offset"}
    got = (s[("recsys_job_events_stored_total", ())], quarantined, lag, processed,
           s[("recsys_job_events_until_next_run", ())], s[("recsys_job_runs_started_total", ())],
           s[("recsys_job_runs_rejected_total", ())], s[("recsys_job_training_in_progress", ())])
    want = (VALID, {code: observed.bad_reasons.get(code, 0) for code in REASON_CODES},
            {"0": 0, "1": 0}, observed.end_offsets, 1_000 - (VALID - 1_000), 1, 0, 0)
    assert got == want, observed.log[-3000:]


def test_the_published_run_is_in_the_scrape_with_its_figures(observed: Observed):
    run_id = (observed.results / LATEST).read_text().strip()
    folder = observed.results / RUNS_DIR / run_id
    manifest = Manifest.from_json((folder / MANIFEST).read_text())
    metrics = Metrics.from_json((folder / METRICS).read_text())
    s = observed.scrape
    metric = (("metric", "coverage"),)
    stages = {dict(labels)["stage"]: v for (name, labels), v in s.items()
              if name == "recsys_job_training_stage_duration_seconds"}
    age = s[("recsys_job_last_published_run_age_seconds", ())]
    got = (s[("recsys_job_last_published_run_model_metric", metric)],
           s[("recsys_job_last_published_run_baseline_metric", metric)],
           s[("recsys_job_last_published_run_sequence", ())],
           s[("recsys_job_last_run_accepted", ())],
           stages, s[("recsys_job_training_run_duration_seconds_count", ())], 0 <= age < 600)
    assert got == (metrics.model["coverage"], metrics.baseline["coverage"], manifest.sequence,
                   1, manifest.timings_seconds, 1, True)


def test_sparks_prometheus_servlet_answers_with_the_querys_streaming_metrics(observed: Observed):
    assert set(SPARK_STREAMING) - observed.spark_names == set()


def test_every_dashboard_and_alert_expression_names_an_exported_metric(observed: Observed):
    dashboard = json.loads((OBSERVABILITY / "dashboard.json").read_text())
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [r["expr"] for group in rules["groups"] for r in group["rules"]]
    exported = observed.scrape_names | observed.spark_names
    unknown = {name for expr in exprs for name in metric_names(expr)} - exported
    assert unknown == set()


def test_status_shows_offsets_counts_and_the_run_while_running_and_stopped(observed: Observed):
    ends = observed.end_offsets
    rows = [f"{p:>9}  {ends[p]:>12}  {ends[p]:>12}  {0:>10}" for p in ("0", "1")]
    run_id = (observed.results / LATEST).read_text().strip()
    reasons = [f"  {code:<24} {n:>10}" for code, n in sorted(
        observed.bad_reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    for screen, state in ((observed.status_running, "running"),
                          (observed.status_stopped, "stopped")):
        lines = screen.splitlines()
        wanted = [*rows, f"events    {VALID} stored, {len(BAD_KINDS)} quarantined "
                  f"({100 * len(BAD_KINDS) / (VALID + len(BAD_KINDS)):.2f}%)", *reasons]
        job_line = next(line for line in lines if line.startswith("job "))
        run_line = next((line for line in lines if run_id in line), "")
        assert ([w for w in wanted if w not in lines], job_line.split(",")[0],
                run_line.startswith(f"* {run_id}") and "published" in run_line) == (
            [], f"job       {state}", True), screen
    assert observed.exit_code == 0


def test_status_with_the_broker_down_says_so_in_one_line(observed: Observed):
    screen = status_screen(observed.results, f"127.0.0.1:{free_ports(1)[0]}")
    about_broker = [line for line in screen.splitlines() if line.startswith("broker")]
    assert (len(about_broker), f"{VALID} stored" in screen) == (1, True), screen
