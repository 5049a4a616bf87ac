"""The job with its state and results on a real HDFS (infra/hdfs_local.py): on the standalone
cluster with workers that share no local folder, under SIGKILLs, rendered by the visualizer,
and refusing bad URIs at start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from infra.ports import free_ports
from infra.spark_cluster import LocalSparkCluster
from infra.wait import wait_until
from recsys_contract.runs import REJECTED_DIR, RUNS_DIR
from spark_app import schema as S
from spark_app.failpoints import AFTER_PUBLISH
from spark_app.failpoints import ENV as FAILPOINT_ENV
from spark_app.storage import Storage, join
from spark_app.stream.ledger import Ledger, load_ledger
from spark_app.stream.store import read_events
from spark_app.training.export import latest_run_id
from tests.kafka_helpers import create_topic, sales_event, send_all

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
RUN_FILES = {"edges.csv", "factors", "manifest.json", "metrics.json", "model", "popular.csv",
             "vertices.csv"}
# Names that only the event store, the ledger and the runs' files have.
JOB_FILE_MARKERS = ("batch_id=", "seq_base=", "input_split=", "ledger.json", "manifest.json",
                    "vertices.csv", "edges.csv", "popular.csv", "id_map")


def write_config(tmp_path: Path, name: str, settings: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def stored_ids(spark, state: str, ledger: Ledger) -> list[str]:
    stored = read_events(spark, join(state, "events"), first_seq=0, end_seq=10**9,
                         through_batch=ledger.last_batch_id).select(S.EVENT_ID)
    return sorted(r[0] for r in stored.collect())


def job_files_on_local_disk(roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in {".venv", ".deps", ".git"}]
            found += [f"{folder}/{n}" for n in dirs + files
                      if any(marker in n for marker in JOB_FILE_MARKERS)]
    return sorted(found)


# --- (a) the end-to-end run on the standalone cluster, (c) its report -------------------------

@dataclass(frozen=True)
class ClusterRun:
    state: str
    results: str
    log: str
    local_job_files: list[str]
    repo_job_files_before: list[str]


@pytest.fixture(scope="module")
def cluster_run(spark, kafka, hdfs, tmp_path_factory, spark_scratch_in_tmp) -> ClusterRun:
    """25,000 events, threshold 10,000, state and results on HDFS, submitted with spark-submit
    to a master and two workers, each with its own work and scratch folders."""
    tmp = tmp_path_factory.mktemp("hdfs-e2e")
    topic = "hdfs-e2e"
    create_topic(kafka.bootstrap_servers, topic, partitions=2)
    send_all(kafka.bootstrap_servers, topic, (sales_event(i) for i in range(25_000)))
    state, results = join(hdfs.uri, "e2e", "state"), join(hdfs.uri, "e2e", "results")
    config = write_config(tmp, "job", {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers, "topic": topic},
        "stream": {"available_now": True},
        "training": {"threshold": 10_000},
        "paths": {"state": state, "results": results},
        "als": {"max_iter": 5},
        "selection": {"every_n_runs": 0},  # one fit per run: the storage is under test here
    })
    before = job_files_on_local_disk([REPO])
    cluster = LocalSparkCluster(tmp / "spark-cluster", workers=2, cores_per_worker=1,
                                memory_per_worker="1500m")
    cluster.start(timeout=180)
    try:
        env = {**os.environ, "SPARK_MASTER_URL": cluster.master_url,
               "RECSYS_CONFIG": str(config)}
        job = subprocess.run([str(REPO / "scripts" / "submit"), "--set",
                              "spark.app_name=hdfs-e2e"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=900)
        assert job.returncode == 0, job.stderr[-3000:]
        app = next(a for a in cluster.applications()["completed"] if a["name"] == "hdfs-e2e")
        workers = {e["worker_id"] for e in cluster.executors(app["id"])}
        assert len(workers) == 2, workers
    finally:
        cluster.stop()
    local = job_files_on_local_disk([tmp, spark_scratch_in_tmp, REPO])
    return ClusterRun(state, results, job.stderr, local, before)


def test_the_cluster_run_stores_every_event_once_and_publishes_two_complete_runs(
        spark, cluster_run):
    storage = Storage(spark)
    ledger = load_ledger(cluster_run.state, storage)
    runs = [e for e in storage.list(join(cluster_run.results, RUNS_DIR)) if e.is_dir]
    files = [{e.name for e in storage.list(r.path)} for r in runs]
    assert (stored_ids(spark, cluster_run.state, ledger), len(runs), files,
            latest_run_id(storage, cluster_run.results)) == (
        sorted(f"e{i}" for i in range(25_000)), 2, [RUN_FILES, RUN_FILES],
        runs[-1].name if runs else None)


def test_no_file_of_the_store_or_the_runs_is_on_the_local_disk(cluster_run):
    # The workers' work and scratch folders, the driver's scratch, the test's folders and the
    # repository hold nothing of the job's state: it lives on HDFS only.
    assert [f for f in cluster_run.local_job_files
            if f not in cluster_run.repo_job_files_before] == []


def test_the_visualizer_renders_the_latest_run_from_hdfs(spark, hdfs, cluster_run, tmp_path):
    results = cluster_run.results.replace(hdfs.uri, f"hdfs://127.0.0.1:{hdfs.ports.namenode}")
    done = subprocess.run(
        [str(REPO / "scripts" / "visualize"), "--results", results, "--webhdfs-port",
         str(hdfs.ports.http), "--cache", str(tmp_path / "cache"), "--out",
         str(tmp_path / "report")], capture_output=True, text=True, timeout=300)
    latest = latest_run_id(Storage(spark), cluster_run.results)
    index = tmp_path / "report" / "index.html"
    assert (done.returncode, index.is_file() and latest in index.read_text()) == (0, True), \
        done.stderr[-2000:]


# --- (b) SIGKILLs mid-batch, mid-export and between a run's rename and the ledger save -------

def start_job(config: Path, log: Path, failpoint: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(FAILPOINT_ENV, None)
    if failpoint:
        env[FAILPOINT_ENV] = failpoint
    return subprocess.Popen([sys.executable, str(REPO / "spark_app" / "main.py"), "--config",
                             str(config)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def kill(job: subprocess.Popen) -> None:
    """SIGKILL the job's whole process group (its Python driver and its Spark JVM)."""
    try:
        os.killpg(job.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    job.wait(timeout=60)


def alive(job: subprocess.Popen, log: Path) -> None:
    if job.poll() is not None:
        raise AssertionError(f"the job exited early:\n{log.read_text()[-3000:]}")


class RunWatcher(threading.Thread):
    """A reader listing runs/ as fast as it can: every run it ever lists must be complete."""

    def __init__(self, storage: Storage, results: str) -> None:
        super().__init__(daemon=True)
        self.storage, self.results = storage, results
        self.incomplete: list[str] = []
        self.listed: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for entry in self.storage.list(join(self.results, RUNS_DIR)):
                if entry.name.startswith(".") or entry.name in self.listed:
                    continue
                names = {e.name for e in self.storage.list(entry.path)}
                if not RUN_FILES <= names:
                    self.incomplete.append(f"{entry.name}: {sorted(names)}")
                self.listed.add(entry.name)
            self.stop.wait(0.05)


@pytest.mark.timeout(1800)  # seven lives of the job, each starting Spark and training
def test_sigkills_on_hdfs_lose_nothing_and_publish_each_sequence_once(
        spark, kafka, hdfs, tmp_path):
    topic, wave = "hdfs-crash", 4_000
    create_topic(kafka.bootstrap_servers, topic, partitions=2)
    storage = Storage(spark)
    state, results = join(hdfs.uri, "crash", "state"), join(hdfs.uri, "crash", "results")
    config = write_config(tmp_path, "job", {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers, "topic": topic,
                  "max_offsets_per_trigger": 1000},
        "stream": {"trigger_interval_seconds": 0, "progress_every_batches": 1},
        "training": {"threshold": 2_000},
        "paths": {"state": state, "results": results},
        "als": {"max_iter": 3, "rank": 4},
        "selection": {"every_n_runs": 0},
        "spark": {"master": "local[2]", "extra_conf": {"spark.ui.enabled": "false"}},
    })
    checkpoint, log = join(state, "checkpoint"), tmp_path / "job.log"
    batches = lambda kind: {int(e.name) for e in storage.list(join(checkpoint, kind))  # noqa: E731
                            if e.name.isdigit()}

    def mid_batch(after: int) -> bool:
        alive(job, log)
        offsets, commits = batches("offsets"), batches("commits")
        return any(b > after and b not in commits for b in offsets) or max(
            commits, default=-1) > after

    def mid_export() -> bool:
        alive(job, log)
        return any(e.name.startswith(".tmp-") for e in storage.list(results))

    watcher = RunWatcher(storage, results)
    watcher.start()
    send_all(kafka.bootstrap_servers, topic, (sales_event(i) for i in range(wave)))
    job = start_job(config, log)
    kills = []
    try:
        for after in (-1, 0, 1):  # mid-way through batch 0, then later ones
            wait_until(lambda a=after: mid_batch(a), 240, f"a batch after {after}", 0.05)
            kill(job)
            kills.append(f"batch>{after}")
            job = start_job(config, log)
        for _ in range(2):
            wait_until(mid_export, 300, f"a run being exported (log: {log})", 0.05)
            kill(job)
            kills.append("export")
            job = start_job(config, log)
        kill(job)  # the next life dies right after publishing a run, before the ledger
        job = start_job(config, log, failpoint=AFTER_PUBLISH)
        assert job.wait(timeout=600) == -signal.SIGKILL, log.read_text()[-3000:]
        kill(job)
        kills.append(AFTER_PUBLISH)
        job = start_job(config, log)
        send_all(kafka.bootstrap_servers, topic, (sales_event(i) for i in range(wave, 2 * wave)))

        def done() -> bool:
            alive(job, log)
            ledger = load_ledger(state, storage)
            return (ledger.total_valid == 2 * wave and ledger.trained_through == 2 * wave
                    and ledger.pending_training is None)

        wait_until(done, 600, f"every event stored and trained (log: {log})", 0.5)
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        watcher.stop.set()
        if job.poll() is None:
            kill(job)
    watcher.join(timeout=30)
    ledger = load_ledger(state, storage)
    published = {kind: sorted(e.name for e in storage.list(join(results, kind)) if e.is_dir)
                 for kind in (RUNS_DIR, REJECTED_DIR)}
    folders = published[RUNS_DIR] + published[REJECTED_DIR]
    sequences = sorted(json.loads(storage.read_text(join(results, kind, name, "manifest.json"))
                              )["sequence"] for kind, names in published.items() for name in names)
    accepted = [t.run_id for t in ledger.trainings if t.accepted]
    assert (stored_ids(spark, state, ledger), sorted(folders),
            sequences, latest_run_id(storage, results), watcher.incomplete, len(kills)) == (
        sorted(f"e{i}" for i in range(2 * wave)), sorted(t.run_id for t in ledger.trainings),
        [t.sequence for t in ledger.trainings], accepted[-1] if accepted else None, [], 6)


# --- (d) a filesystem without atomic rename, (e) bad URIs: one line, exit 2 ------------------

@pytest.fixture(scope="module")
def locked_folder(spark, hdfs) -> str:
    """An HDFS folder only its owner (the test's user, HDFS's superuser) may write."""
    storage = Storage(spark)
    folder = join(hdfs.uri, "locked")
    storage.mkdirs(folder)
    fs = spark._jvm.org.apache.hadoop.fs.Path(folder).getFileSystem(
        spark._jsc.hadoopConfiguration())
    fs.setPermission(spark._jvm.org.apache.hadoop.fs.Path(folder),
                     spark._jvm.org.apache.hadoop.fs.permission.FsPermission.valueOf("drwxr-xr-x"))
    return folder


@pytest.mark.parametrize("case", ["unknown-scheme", "object-store", "no-namenode",
                                  "no-permission"])
def test_a_bad_state_uri_stops_the_job_at_start_with_one_line(
        case, kafka, hdfs, locked_folder, tmp_path):
    uri, expected = {
        "unknown-scheme": ("foo://somewhere/state", "no Hadoop filesystem for scheme 'foo'"),
        "object-store": ("s3a://bucket/state", "s3a:// has no atomic rename"),
        "no-namenode": (f"hdfs://127.0.0.1:{free_ports(1)[0]}/state",
                        "the NameNode does not answer"),
        "no-permission": (join(locked_folder, "state"), "no permission to write there"),
    }[case]
    topic = f"bad-uri-{case}"  # it exists: the job checks its topic before the storage
    create_topic(kafka.bootstrap_servers, topic, partitions=1)
    config = write_config(tmp_path, "job", {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers, "topic": topic},
        "paths": {"state": uri, "results": str(tmp_path / "results")},
        "spark": {"master": "local[1]", "extra_conf": {"spark.ui.enabled": "false"}},
    })
    env = {**os.environ, "PYTHONPATH": str(REPO), "HADOOP_USER_NAME": "intruder"}
    done = subprocess.run([sys.executable, str(REPO / "spark_app" / "main.py"), "--config",
                           str(config)], capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert (done.returncode, len(errors), "Traceback" in done.stderr,
            expected in (errors or [""])[0]) == (2, 1, False, True), done.stderr[-3000:]
