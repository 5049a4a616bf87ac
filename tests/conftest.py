"""Session-wide fixtures: one SparkSession with the real jars, one real Kafka broker, one HDFS.

Each starts at most once per pytest session, on loopback, in temporary folders, and is
stopped at the end even when tests fail. Unit tests that need none of them never start them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.java import use_preferred_java

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("SPARK_CONF_DIR", str(REPO_ROOT / "conf"))
# The driver's Python and the workers' Python must be the same interpreter (the venv's).
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", os.sys.executable)
use_preferred_java()  # as scripts/test does: $JAVA_HOME, else the newest JDK installed


@pytest.fixture(scope="session", autouse=True)
def spark_scratch_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Spark's scratch folders (blockmgr-*, spark-*) of every JVM the tests start (this
    session's, spark-submit drivers, cluster daemons and executors) under pytest's temporary
    folder, not /tmp: a process the tests stop with a signal does not leave them behind."""
    scratch = tmp_path_factory.mktemp("spark-local-dirs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPARK_LOCAL_DIRS", str(scratch))
        # spark-submit's own JVM makes its temporary folders in java.io.tmpdir instead.
        env.setenv("SPARK_SUBMIT_OPTS", f"-Djava.io.tmpdir={scratch}")
        yield scratch


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One local[2] SparkSession for the whole test session, with the Kafka connector jars."""
    from spark_app.session import create_session

    tmp = tmp_path_factory.mktemp("spark")
    session = create_session(
        app_name="recsys-tests",
        master="local[2]",
        shuffle_partitions=2,
        extra_conf={
            "spark.ui.enabled": "false",
            "spark.sql.warehouse.dir": str(tmp / "warehouse"),
            "spark.local.dir": str(tmp / "local"),
            "spark.sql.streaming.checkpointLocation": str(tmp / "checkpoints"),
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
        },
    )
    session.sparkContext.setCheckpointDir(str(tmp / "rdd-checkpoints"))
    logging.getLogger("py4j").setLevel(logging.WARNING)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A real single-node Kafka broker (KRaft) on free loopback ports, for the whole session."""
    from infra.kafka_local import LocalKafka

    broker = LocalKafka(home=tmp_path_factory.mktemp("kafka"), brokers=1)
    broker.start(timeout=120)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A real HDFS (NameNode + 1 DataNode, WebHDFS on) on free loopback ports, for the session."""
    from infra.hdfs_local import LocalHdfs

    cluster = LocalHdfs(home=tmp_path_factory.mktemp("hdfs"))
    cluster.start(timeout=180)
    try:
        yield cluster
    finally:
        cluster.stop()
