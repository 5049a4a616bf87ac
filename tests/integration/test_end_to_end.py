"""The pipeline as users meet it: the demo path (twice: restart continues), and a cluster run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from infra.demo import DemoOptions, run_demo
from infra.kafka_local import LocalKafka
from infra.spark_cluster import LocalSparkCluster
from recsys_contract.runs import LATEST, MANIFEST, RUNS_DIR, parse_latest
from spark_app import schema as S
from spark_app.stream.ledger import load_ledger
from spark_app.stream.store import read_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def published_runs(results: Path) -> list[str]:
    return sorted(p.name for p in (results / "runs").iterdir() if not p.name.startswith("."))


def test_demo_publishes_two_runs_and_a_restart_continues_without_duplicates(spark, tmp_path):
    options = DemoOptions(events=2_500, threshold=1_000, rate=2_500, users=300, products=80,
                          partitions=2, kafka_home=tmp_path / "kafka", kafka_port=None,
                          state=tmp_path / "state", results=tmp_path / "results",
                          logs=tmp_path / "logs", timeout=600, serve_port=None)
    first = run_demo(options)
    latest = first.latest
    edges = pd.read_csv(latest / "edges.csv")
    vertices = pd.read_csv(latest / "vertices.csv")
    report = first.report.read_text()
    first_view = (first.runs_after, len(published_runs(options.results)),
                  first.served["run_id"] == latest.name
                  and first.served["source"] in ("model", "fold_in"),
                  set(edges.columns) >= {"src", "dst", "score", "rank"},
                  set(vertices["type"]) == {"user", "product"},
                  "graph.png" in report and (first.report.parent / "graph.png").exists())

    second = run_demo(options)  # same broker home, state and results: continues
    ledger = load_ledger(options.state)
    stored = read_events(spark, options.state / "events", first_seq=0, end_seq=10**9,
                         through_batch=ledger.last_batch_id)
    ids = stored.select(S.EVENT_ID)
    assert (first_view, second.runs_after, ids.count(), ids.distinct().count(),
            ledger.total_valid + ledger.total_quarantined) == (
        (2, 2, True, True, True, True), 4, ledger.total_valid, ledger.total_valid,
        2 * options.events)


@pytest.fixture
def cluster(tmp_path):
    spark_cluster = LocalSparkCluster(tmp_path / "spark-cluster", workers=2,
                                      cores_per_worker=1, memory_per_worker="1500m")
    spark_cluster.start(timeout=180)
    try:
        yield spark_cluster
    finally:
        spark_cluster.stop()


@pytest.fixture
def kafka3(tmp_path):
    brokers = LocalKafka(home=tmp_path / "kafka3", brokers=3)
    brokers.start(timeout=180)
    try:
        yield brokers
    finally:
        brokers.stop()


def test_job_on_the_standalone_cluster_publishes_a_run_with_executors_on_both_workers(
        cluster, kafka3, tmp_path):
    kafka3.create_topic("sales", partitions=2, replication=3)
    produced = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "producer", "--bootstrap-servers",
         kafka3.bootstrap_servers, "--events", "3000", "--users", "300", "--products", "80",
         "--progress", "off"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert produced.returncode == 0, produced.stderr[-2000:]
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka3.bootstrap_servers},
        "stream": {"available_now": True},
        "training": {"threshold": 2_500},
        "paths": {"results": str(tmp_path / "results"), "state": str(tmp_path / "state")},
        "als": {"max_iter": 5},
    }))
    env = {**os.environ, "SPARK_MASTER_URL": cluster.master_url, "RECSYS_CONFIG": str(config)}
    job = subprocess.run([str(REPO / "scripts" / "submit"), "--set", "spark.app_name=e2e-cluster"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stderr[-3000:]
    app = next(a for a in cluster.applications()["completed"] if a["name"] == "e2e-cluster")
    workers = {e["worker_id"] for e in cluster.executors(app["id"])}
    latest = parse_latest((tmp_path / "results" / LATEST).read_text())
    manifest = json.loads((tmp_path / "results" / RUNS_DIR / latest / MANIFEST).read_text())
    assert (manifest["spark"]["master"], len(workers)) == (cluster.master_url, 2)
