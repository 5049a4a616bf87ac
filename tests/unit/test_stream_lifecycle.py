"""The job's lifecycle without a broker: stop, abandoned runs, one-line failures, start checks."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from infra.ports import free_ports
from recsys_contract.config import load_config
from spark_app.errors import (
    EXIT_IO,
    BrokerUnavailableError,
    JobFailedError,
    SparkMasterUnavailableError,
    StorageError,
)
from spark_app.session import check_spark_master, default_worker_python, standalone_masters
from spark_app.stream.batch import BatchProcessor, BatchSettings
from spark_app.stream.failures import describe_failure
from spark_app.stream.job import check_kafka
from spark_app.stream.ledger import load_ledger
from spark_app.stream.stop import TRAINING_TAG, StopFlag

REPO = Path(__file__).resolve().parents[2]
KAFKA_TIME = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


# --- stop: a training run in progress is abandoned, the batch commits -----------------------------

def slow_trainer(started: threading.Event):
    """A trainer whose Spark job would run for a minute (a Python UDF that sleeps)."""

    @F.udf("long")
    def sleepy(x):
        import time as t

        t.sleep(60)
        return x

    def train(events, record, ledger):
        started.set()
        events.sparkSession.range(2).select(sleepy("id")).collect()
        return "never", True

    return train


def test_a_stop_during_a_training_run_cancels_it_leaves_it_pending_and_commits_the_batch(
    spark, tmp_path
):
    stop, started = StopFlag(), threading.Event()
    processor = BatchProcessor(settings(tmp_path), stop.guard(slow_trainer(started)))
    timer = threading.Thread(target=lambda: started.wait(60) and stop.request("SIGTERM"))
    timer.start()
    began = time.monotonic()
    processor.process(batch(spark, 0, 12), 0)  # returns: the batch is not failed by the stop
    timer.join()
    ledger = load_ledger(tmp_path / "state")
    assert (ledger.last_batch_id, ledger.pending_training.sequence, ledger.trainings,
            time.monotonic() - began < 45) == (0, 1, (), True)


def test_a_training_run_due_after_the_stop_is_not_started(spark, tmp_path):
    stop = StopFlag()
    stop.request("SIGINT")
    calls = []
    processor = BatchProcessor(settings(tmp_path), stop.guard(lambda *a: calls.append(a)))
    processor.process(batch(spark, 0, 25), 0)
    assert (calls, load_ledger(tmp_path / "state").pending_training.cut) == ([], 10)


def test_a_trainer_failing_without_a_stop_fails_as_itself(spark):
    def broken(events, record, ledger):
        raise ValueError("bad model")

    with pytest.raises(ValueError, match="bad model"):
        StopFlag().guard(broken)(spark.range(1), None, None)


def test_the_log_filter_hides_the_cancellations_of_the_training_tag():
    conf = (REPO / "conf" / "log4j2.properties").read_text()
    regex = re.search(r"^appender\.console\.filter\.stop\.regex = (.*)$", conf, re.M).group(1)
    cancelled = (f"org.apache.spark.SparkException: [SPARK_JOB_CANCELLED] Job 25 cancelled "
                 f"part of cancelled job tags {TRAINING_TAG} SQLSTATE: XXKDA\n\tat org.apache")
    assert (bool(re.fullmatch(regex, cancelled)),
            bool(re.fullmatch(regex, "Job 3 failed: No space left on device"))) == (True, False)


# --- failures: one line with the root cause -------------------------------------------------------

def test_an_os_error_in_the_handler_is_an_io_failure_naming_its_path(tmp_path):
    target = tmp_path / "results" / "quarantine"
    error = describe_failure(NotADirectoryError(20, "Not a directory", str(target)))
    assert (type(error), error.exit_code, str(target) in str(error), "\n" in str(error)) == (
        StorageError, EXIT_IO, True, False)


def test_a_spark_write_into_a_file_is_an_io_failure_naming_the_path(spark, tmp_path):
    blocker = tmp_path / "events"
    blocker.write_text("a file where a folder belongs")
    with pytest.raises(Exception) as raised:  # whatever Py4J wraps it in
        spark.range(3).write.parquet(str(blocker / "_staging"))
    error = describe_failure(raised.value)
    assert (type(error), str(blocker) in str(error), "\n" in str(error)) == (
        StorageError, True, False)


def test_a_failure_that_is_no_io_error_keeps_its_cause_and_exit_code_1():
    error = describe_failure(RuntimeError("the model diverged"))
    assert (type(error), error.exit_code, "the model diverged" in str(error)) == (
        JobFailedError, 1, True)


def test_an_io_error_naming_no_path_names_the_configured_folders():
    error = describe_failure(OSError(28, "No space left on device"),
                             {"paths.state": "/data/state"})
    assert "paths.state=/data/state" in str(error)


# --- start checks ---------------------------------------------------------------------------------

def test_no_broker_is_one_error_without_the_kafka_clients_noise(caplog):
    port = free_ports(1)[0]
    with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{port} within 2 s"):
        check_kafka(f"127.0.0.1:{port}", "sales", 2)
    assert [r.name for r in caplog.records if r.name.startswith("kafka")] == []


def test_an_unreachable_standalone_master_is_refused_quickly():
    port = free_ports(1)[0]
    began = time.monotonic()
    with pytest.raises(SparkMasterUnavailableError, match=f"spark://127.0.0.1:{port}"):
        check_spark_master(f"spark://127.0.0.1:{port}", timeout_seconds=5)
    assert time.monotonic() - began < 5


@pytest.mark.parametrize(
    ("master", "hosts"),
    [("local[2]", []), ("spark://a:7077", [("a", 7077)]), ("spark://a:1,b:2", [("a", 1), ("b", 2)]),
     ("spark://a", [("a", 7077)]), ("yarn", [])],
)
def test_standalone_masters(master, hosts):
    assert standalone_masters(master) == hosts


def test_the_workers_use_the_jobs_interpreter_unless_one_is_set(monkeypatch):
    import sys

    unset, chosen = {}, {"PYSPARK_PYTHON": "/opt/py/bin/python"}
    default_worker_python(unset)
    default_worker_python(chosen)
    assert (unset, chosen) == ({"PYSPARK_PYTHON": sys.executable},
                               {"PYSPARK_PYTHON": "/opt/py/bin/python"})


# --- helpers --------------------------------------------------------------------------------------

def settings(tmp_path, threshold=10) -> BatchSettings:
    cfg = load_config(overrides=[f"training.threshold={threshold}"])
    return replace(BatchSettings.from_config(cfg), events_dir=tmp_path / "events",
                   quarantine_dir=tmp_path / "quarantine", state_dir=tmp_path / "state")


def batch(spark, start: int, n: int):
    rows = [(json.dumps({"event_id": f"e{i}", "user_id": f"u{i % 7}", "product_id": f"p{i % 5}",
                         "quantity": 1, "timestamp": "2026-11-27T09:00:00Z"}),
             "sales", i % 2, i // 2, KAFKA_TIME) for i in range(start, start + n)]
    return spark.createDataFrame(
        rows, "value string, topic string, partition int, offset long, timestamp timestamp"
    )
