"""The real job's lifecycle against a real broker: refusals at start, an I/O failure mid-stream,
and SIGTERM / Ctrl-C through spark-submit; each ends in one line and loses nothing."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from infra.ports import free_ports
from infra.wait import wait_until
from spark_app import schema as S
from spark_app.errors import EXIT_IO, EXIT_START
from spark_app.stream.job import check_kafka
from spark_app.stream.ledger import load_ledger
from spark_app.stream.store import read_events
from tests.kafka_helpers import create_topic, sales_event, send_all

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SMALL_ALS = {"rank": 2, "max_iter": 1}


class Job:
    """The job as a subprocess in its own process group, stdout and stderr read as they come."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
                         for pipe, lines in ((self.process.stdout, self.out),
                                             (self.process.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 300) -> None:
        def seen() -> bool:
            if any(text in line for line in self.out + self.err):
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"the job exited before {text!r}:\n" + self.log()[-4000:])
            return False

        wait_until(seen, timeout, repr(text), interval=0.1)

    def finish(self, timeout: float = 180) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def log(self) -> str:
        return "\n".join(self.out + self.err)


def job_config(tmp_path: Path, bootstrap: str, topic: str, **sections) -> Path:
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "topic": topic},
        "stream": {"trigger_interval_seconds": 0, "progress_every_batches": 1},
        "training": {"threshold": 1000},
        "paths": {"results": str(tmp_path / "results"), "state": str(tmp_path / "state")},
        "als": SMALL_ALS,
        "spark": {"extra_conf": {"spark.ui.enabled": "false"}},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def python_job(config: Path, *args: str, env: dict[str, str] | None = None) -> Job:
    env = {**(env or os.environ), "PYTHONPATH": str(REPO)}
    return Job([sys.executable, str(REPO / "spark_app" / "main.py"), "--config", str(config),
                *args], env)


def submitted_job(config: Path, *args: str, master: str = "local[2]") -> Job:
    env = {**os.environ, "SPARK_MASTER_URL": master, "RECSYS_CONFIG": str(config)}
    return Job([str(REPO / "scripts" / "submit"), *args], env)


def stored_ids(spark, state: Path) -> list[str]:
    ledger = load_ledger(state)
    stored = read_events(spark, state / "events", first_seq=0, end_seq=10**9,
                         through_batch=ledger.last_batch_id)
    return sorted(r[0] for r in stored.select(S.EVENT_ID).collect())


def traces(log: str) -> list[str]:
    """Lines of Python tracebacks and Java stack traces."""
    return [line for line in log.splitlines()
            if line.startswith(("Traceback", "\tat ")) or "Error while sending a command" in line]


# --- refused at start, in one line --------------------------------------------------------------

def test_a_missing_topic_is_refused_at_start_in_one_line_naming_it(kafka, tmp_path):
    config = job_config(tmp_path, kafka.bootstrap_servers, "no-such-topic")
    job = python_job(config)
    code = job.finish(timeout=120)
    lines = [line for line in job.out + job.err if line.strip()]
    assert (code, len(lines), "'no-such-topic' does not exist" in lines[-1]) == (
        EXIT_START, 1, True), job.log()


def test_a_topic_created_while_the_job_waits_lets_it_start(kafka):
    topic, waiting = "created-late", []

    class CreateWhenWaiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting up to" in record.getMessage() and not waiting:
                waiting.append(record.getMessage())
                threading.Thread(target=create_topic,
                                 args=(kafka.bootstrap_servers, topic, 1)).start()

    logger, handler = logging.getLogger("spark_app.stream.job"), CreateWhenWaiting()
    logger.addHandler(handler)
    try:
        check_kafka(kafka.bootstrap_servers, topic, 10, topic_wait_seconds=120, poll_seconds=0.2)
    finally:
        logger.removeHandler(handler)
    assert len(waiting) == 1


def test_an_unreachable_master_fails_at_once_in_one_line_on_stderr(tmp_path):
    master = f"spark://127.0.0.1:{free_ports(1)[0]}"
    job = submitted_job(job_config(tmp_path, "127.0.0.1:9", "sales"), master=master)
    began = time.monotonic()
    code = job.finish(timeout=300)
    job_lines = [line for line in job.err if " spark_app" in line]
    assert (code, job.out, len(job_lines), master in job_lines[-1], traces(job.log()),
            time.monotonic() - began < 60) == (EXIT_START, [], 1, True, [], True), job.log()


# --- an I/O failure mid-stream ----------------------------------------------------------------

def test_an_io_failure_mid_stream_ends_in_one_line_with_exit_74_and_loses_nothing(
    spark, kafka, tmp_path
):
    """The results' quarantine folder becomes a file mid-stream (root ignores permissions, so
    no chmod; a file where a folder belongs fails for everyone). The workers must use the job's
    interpreter: the first `python3` on the PATH here is not one."""
    topic = "lifecycle-io"
    create_topic(kafka.bootstrap_servers, topic, partitions=2)
    send_all(kafka.bootstrap_servers, topic, (sales_event(i) for i in range(1200)))
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'not the job interpreter' >&2\nexit 3\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME")}
    env["PATH"] = f"{fake.parent}:/usr/bin:/bin"
    config = job_config(tmp_path, kafka.bootstrap_servers, topic)
    state, quarantine = tmp_path / "state", tmp_path / "results" / "quarantine"
    job = python_job(config, env=env)
    try:
        job.wait_for("published run")  # ALS ran in Python workers: the job's interpreter
        wait_until(lambda: load_ledger(state).trainings, 120, "the run in the ledger")
        shutil.rmtree(quarantine, ignore_errors=True)
        quarantine.write_text("a file where the quarantine folder belongs")
        send_all(kafka.bootstrap_servers, topic,
                 ["{not json"] + [sales_event(i) for i in range(1200, 1500)])
        code = job.finish(timeout=300)
    finally:
        job.kill()
    last = [line for line in job.err if line.strip()][-1]
    quarantine.unlink()
    rerun = python_job(config, "--available-now", "--set", "training.runner=record")
    try:
        rerun_code = rerun.finish(timeout=300)
    finally:
        rerun.kill()
    quarantined = spark.read.parquet(str(quarantine)).count()
    assert (code, "I/O error" in last and str(quarantine) in last, rerun_code,
            stored_ids(spark, state), quarantined) == (
        EXIT_IO, True, 0, sorted(f"e{i}" for i in range(1500)), 1), last


# --- SIGTERM and Ctrl-C through spark-submit ----------------------------------------------------

def test_sigterm_and_ctrl_c_under_spark_submit_stop_cleanly_and_lose_nothing(
    spark, kafka, tmp_path
):
    """SIGTERM to the spark-submit process (what docker stop and systemd send) during a
    training run, then Ctrl-C (SIGINT to the process group) during a batch; each stop logs
    one `stopped` line and exits 0 without a trace; a restart then holds every event once."""
    topic = "lifecycle-stop"
    create_topic(kafka.bootstrap_servers, topic, partitions=2)
    send_all(kafka.bootstrap_servers, topic, (sales_event(i) for i in range(2000)))
    config = job_config(tmp_path, kafka.bootstrap_servers, topic)
    state = tmp_path / "state"
    outcomes, logs = [], []
    job = submitted_job(config)
    try:
        job.wait_for("training stage split: start")
        job.process.send_signal(signal.SIGTERM)
        outcomes.append(stop_outcome(job, "SIGTERM"))
        logs.append(job.log())

        job = submitted_job(config, "--set", "training.runner=record")
        job.wait_for("streaming query")
        commits_before = committed(state)
        send_all(kafka.bootstrap_servers, topic, (sales_event(i) for i in range(2000, 4000)))
        wait_until(lambda: in_flight(state) > commits_before, 300, "a batch mid-way",
                   interval=0.05)
        batch = in_flight(state)
        os.killpg(job.process.pid, signal.SIGINT)
        outcomes.append(stop_outcome(job, "SIGINT"))
        logs.append(job.log())
        outcomes.append(("batch finished", committed(state) >= batch))

        job = submitted_job(config, "--available-now", "--set", "training.runner=record")
        outcomes.append(("restart", job.finish(timeout=300)))
    finally:
        job.kill()
    ledger = load_ledger(state)
    assert (outcomes, stored_ids(spark, state), ledger.pending_training) == (
        [("SIGTERM", 0, 1, [], []), ("SIGINT", 0, 1, [], []), ("batch finished", True),
         ("restart", 0)],
        sorted(f"e{i}" for i in range(4000)), None), "\n\n".join(logs)[-8000:]


def stop_outcome(job: Job, signal_name: str) -> tuple:
    """(signal, exit code, `stopped` lines, stdout, traces) of a job told to stop."""
    code = job.finish(timeout=180)
    stopped = [line for line in job.err if f"spark_app: stopped ({signal_name})" in line]
    return signal_name, code, len(stopped), job.out, traces(job.log())


def committed(state: Path) -> int:
    return max((int(p.name) for p in (state / "checkpoint" / "commits").glob("[0-9]*")),
               default=-1)


def in_flight(state: Path) -> int:
    return max((int(p.name) for p in (state / "checkpoint" / "offsets").glob("[0-9]*")),
               default=-1)
