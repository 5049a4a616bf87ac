"""The streaming job against a real broker: thresholds, bad input, crashes and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from infra.wait import wait_until
from recsys_contract.config import load_config
from spark_app import schema as S
from spark_app.stream.batch import BatchProcessor, BatchSettings
from spark_app.stream.job import StopFlag, kafka_stream, run_query
from spark_app.stream.ledger import load_ledger
from spark_app.stream.store import read_events
from tests.kafka_helpers import create_topic, sales_event, send_all

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def settings(tmp_path: Path, threshold: int) -> BatchSettings:
    cfg = load_config(overrides=[f"training.threshold={threshold}"])
    return replace(BatchSettings.from_config(cfg), events_dir=tmp_path / "events",
                   quarantine_dir=tmp_path / "quarantine", state_dir=tmp_path / "state")


def stream_of(spark, kafka, topic: str, per_trigger: int = 0):
    return kafka_stream(spark, bootstrap_servers=kafka.bootstrap_servers, topic=topic,
                        starting_offsets="earliest", max_offsets_per_trigger=per_trigger,
                        fail_on_data_loss=True)


class SizeRecorder:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, events, record, ledger):
        self.sizes.append(events.count())
        return None, None


def test_25k_events_with_threshold_10k_train_twice(spark, kafka, tmp_path):
    topic = "threshold-25k"
    create_topic(kafka.bootstrap_servers, topic, partitions=3)
    send_all(kafka.bootstrap_servers, topic, (sales_event(i) for i in range(25_000)))
    trainer = SizeRecorder()
    processor = BatchProcessor(settings(tmp_path, threshold=10_000), trainer)
    run_query(stream_of(spark, kafka, topic, per_trigger=4_000), processor,
              checkpoint=tmp_path / "checkpoint", trigger_interval_seconds=0,
              available_now=True, stop=StopFlag())
    ledger = processor.ledger
    assert (trainer.sizes, ledger.total_valid - ledger.trained_through) == ([10_000, 20_000], 5_000)


def bad_records() -> list[tuple[str, str]]:
    good = sales_event(0)

    def j(**changes):
        return json.dumps({**good, **changes})

    return [
        ("x" * 20_000, "oversized"), ("{oops", "malformed_json"), ("[1]", "not_an_object"),
        (j(user_id=None), "missing_field:user_id"), (j(quantity="2"), "wrong_type:quantity"),
        (j(product_id=""), "empty_id:product_id"), (j(quantity=0), "quantity_not_positive"),
        (j(quantity=5000), "quantity_too_large"), (j(timestamp="soon"), "timestamp_unparseable"),
        (j(timestamp="2099-01-01T00:00:00Z"), "timestamp_in_future"),
        (j(timestamp="1970-01-01T00:00:00Z"), "timestamp_too_old"), (j(price=-3), "price_invalid"),
    ]


def test_mixed_stream_persists_valid_quarantines_bad_and_keeps_running(spark, kafka, tmp_path):
    topic = "mixed"
    create_topic(kafka.bootstrap_servers, topic, partitions=1)
    bad = bad_records()
    values, expected_bad, valid_ids = [], set(), set()
    for i in range(240):  # a bad record after every 20 valid ones, on one partition
        if i % 20 == 19:
            raw, reason = bad[(i // 20) % len(bad)]
            values.append(raw)
            expected_bad.add((i, reason))
        else:
            values.append(sales_event(i))
            valid_ids.add(f"e{i}")
    s = settings(tmp_path, threshold=10**6)
    processor = BatchProcessor(s, SizeRecorder())
    query = (stream_of(spark, kafka, topic, per_trigger=50).writeStream
             .foreachBatch(processor.process)
             .option("checkpointLocation", str(tmp_path / "checkpoint")).start())
    try:
        send_all(kafka.bootstrap_servers, topic, values)
        wait_until(lambda: processor.ledger.total_valid + processor.ledger.total_quarantined
                   >= len(values), 120, "every record to be stored or quarantined")
        stored = read_events(spark, s.events_dir, first_seq=0, end_seq=10**9,
                             through_batch=processor.ledger.last_batch_id)
        stored_ids = {r[0] for r in stored.select(S.EVENT_ID).collect()}
        quarantine = {(r[0], r[1]) for r in spark.read.parquet(str(s.quarantine_dir))
                      .select(S.KAFKA_OFFSET, S.REASON).collect()}
        assert (stored_ids, quarantine, query.isActive) == (valid_ids, expected_bad, True)
    finally:
        query.stop()


# --- crash test: the real entrypoint in a subprocess, killed with SIGKILL -------------------------

def job_config(tmp_path: Path, bootstrap: str, topic: str) -> Path:
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "topic": topic,
                  "max_offsets_per_trigger": 1500},
        "stream": {"trigger_interval_seconds": 0, "progress_every_batches": 1},
        "training": {"threshold": 4000, "runner": "record"},
        "paths": {"results": str(tmp_path / "results"), "state": str(tmp_path / "state")},
        "spark": {"master": "local[2]", "extra_conf": {"spark.ui.enabled": "false"}},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_job(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(REPO / "spark_app" / "main.py"), "--config",
                             str(config)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def batch_in_flight(checkpoint: Path, after: int) -> bool:
    """An offsets entry above `after` with no commit yet: a batch is mid-way."""
    offsets = {int(p.name) for p in (checkpoint / "offsets").glob("[0-9]*")}
    commits = {int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")}
    return any(b > after and b not in commits for b in offsets)


def kill(job: subprocess.Popen) -> None:
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)


def wait_for_kill_point(job: subprocess.Popen, checkpoint: Path, after: int, log: Path) -> None:
    """Until a batch above `after` is mid-way (or already committed); fail if the job died."""

    def ready() -> bool:
        if job.poll() is not None:
            raise AssertionError(f"the job exited early:\n{log.read_text()[-3000:]}")
        commits = [int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")]
        return batch_in_flight(checkpoint, after) or max(commits, default=-1) > after

    wait_until(ready, 180, f"a batch after {after} to start (log: {log})", interval=0.05)


def test_sigkill_at_several_points_loses_and_duplicates_nothing(spark, kafka, tmp_path):
    topic = "crash"
    create_topic(kafka.bootstrap_servers, topic, partitions=2)
    wave, waves = 6_000, 3
    config = job_config(tmp_path, kafka.bootstrap_servers, topic)
    state, log = tmp_path / "state", tmp_path / "job.log"
    send_all(kafka.bootstrap_servers, topic, (sales_event(i) for i in range(wave)))
    job = start_job(config, log)
    try:
        for n, after in enumerate((-1, 1, 3)):  # mid-way through batch 0, then later ones
            wait_for_kill_point(job, state / "checkpoint", after, log)
            kill(job)
            job = start_job(config, log)
            if n + 1 < waves:
                first = (n + 1) * wave
                send_all(kafka.bootstrap_servers, topic,
                         (sales_event(i) for i in range(first, first + wave)))
        wait_until(lambda: load_ledger(state).total_valid == waves * wave, 300,
                   f"all events to be stored (log: {log})")
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if job.poll() is None:
            kill(job)
    ledger = load_ledger(state)
    stored = read_events(spark, state / "events", first_seq=0, end_seq=10**9,
                         through_batch=ledger.last_batch_id).select(S.EVENT_ID)
    stored_ids = sorted(r[0] for r in stored.collect())
    cuts = [t.cut for t in ledger.trainings]
    assert (stored_ids, cuts, ledger.pending_training) == (
        sorted(f"e{i}" for i in range(waves * wave)), [4_000, 8_000, 12_000, 16_000], None)
