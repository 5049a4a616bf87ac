"""The one place a SparkSession is built; everything else receives it.

Launched by `spark-submit`, the master and jars come from its command line and are left alone.
Started from plain Python (tests, demo, benchmarks), the session gets `master` and the jars
that scripts/setup fetched into .deps/ through `spark.jars`, so nothing is downloaded at run time.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from urllib.parse import urlsplit

from pyspark.sql import SparkSession

from spark_app.errors import MissingJarError, SparkMasterUnavailableError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPS_DIR = Path(os.environ.get("RECSYS_DEPS_DIR", REPO_ROOT / ".deps"))
CONF_DIR = REPO_ROOT / "conf"
KAFKA_CONNECTOR_PREFIX = "spark-sql-kafka-0-10"
PARSER_JAR = "recsys-udf.jar"  # the project's own JVM code (jvm/udf/), built by scripts/setup
LOCALITY_WAIT_KEY = "spark.locality.wait"  # static: read when the context starts


# A standalone master must accept a connection within this at start; Spark itself retries
# registering for about a minute and then fails with a trace about a stopped SparkContext.
MASTER_CONNECT_TIMEOUT_SECONDS = 10.0


def launched_by_spark_submit() -> bool:
    """True inside a Python driver started by spark-submit (its JVM is already running)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def default_worker_python(environ: MutableMapping[str, str] = os.environ) -> None:
    """Started from plain Python, the Python workers run this interpreter unless told otherwise.

    PySpark's own default is whatever `python3` is first on the PATH, which need not have the
    job's libraries (numpy, pandas, pyarrow). A PYSPARK_PYTHON set by the user is kept;
    spark-submit's (from spark.pyspark.python) never reaches here.
    """
    environ.setdefault("PYSPARK_PYTHON", sys.executable)


def standalone_masters(master: str) -> list[tuple[str, int]]:
    """(host, port) of each master of a `spark://h1:p1[,h2:p2]` URL; [] for local, yarn, k8s."""
    if not master.startswith("spark://"):
        return []
    hosts = []
    for part in master[len("spark://"):].split(","):
        address = urlsplit(f"//{part.strip()}")
        hosts.append((address.hostname or "", address.port or 7077))
    return hosts


def check_spark_master(master: str, timeout_seconds: float = MASTER_CONNECT_TIMEOUT_SECONDS
                       ) -> None:
    """A standalone master accepts a connection, or SparkMasterUnavailableError in one line."""
    hosts = standalone_masters(master)
    for host, port in hosts:
        try:
            socket.create_connection((host, port), timeout=timeout_seconds).close()
            return
        except OSError:
            continue
    if hosts:
        raise SparkMasterUnavailableError(
            f"no Spark master answered at {master} within {timeout_seconds:.0f} s; start it "
            "(scripts/spark-cluster start) or fix the master URL (spark-submit --master, "
            "SPARK_MASTER_URL, or spark.master when not submitted)"
        )


def submitted_master() -> str:
    """The master spark-submit was given (its JVM already runs): read from its SparkConf."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # joins spark-submit's gateway; starts no context
    return SparkConf().get("spark.master", "")


def spark_jars(deps_dir: Path = DEPS_DIR) -> list[Path]:
    """Jars Spark needs beyond pyspark's own: the Kafka connector, the project's record parser,
    and GraphFrames if fetched."""
    jars = sorted((deps_dir / "spark-jars").glob("*.jar"))
    if not any(j.name.startswith(KAFKA_CONNECTOR_PREFIX) for j in jars):
        raise MissingJarError(
            f"the Spark Kafka connector is not in {deps_dir / 'spark-jars'}; run scripts/setup"
        )
    if not any(j.name == PARSER_JAR for j in jars):
        raise MissingJarError(
            f"the record parser {PARSER_JAR} is not in {deps_dir / 'spark-jars'}; run "
            "scripts/setup (it builds jvm/udf/ with Maven)"
        )
    return jars + sorted((deps_dir / "graphframes-jars").glob("*.jar"))


def create_session(
    *,
    app_name: str,
    master: str,
    shuffle_partitions: int,
    extra_conf: Mapping[str, str] | None = None,
    jars: list[Path] | None = None,
) -> SparkSession:
    """Build (or join) the SparkSession with the settings the job's correctness needs (the
    performance settings are in conf/spark-defaults.conf, read through SPARK_CONF_DIR)."""
    builder = SparkSession.builder.appName(app_name)
    if not launched_by_spark_submit():
        builder = builder.master(master)
        os.environ.setdefault("SPARK_CONF_DIR", str(CONF_DIR))
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        default_worker_python()
        chosen = spark_jars() if jars is None else jars
        if chosen:
            builder = builder.config("spark.jars", ",".join(str(j) for j in chosen))
    builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    # 64-bit microseconds, Parquet's own timestamp type, rather than Spark's default of the
    # deprecated INT96: what pandas and pyarrow expect, and cheaper to write.
    builder = builder.config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    # A local master has one executor, so waiting for a better locality level only delays a
    # task; and the local backend offers its cores again only when a task ends: a task set
    # that mixes cached blocks (this executor) with HDFS blocks (this host) could then leave a
    # task waiting for ever, with every core idle (seen with the job's state on HDFS).
    if (submitted_master() if launched_by_spark_submit() else master).startswith("local"):
        builder = builder.config(LOCALITY_WAIT_KEY, "0")
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    log.info("Spark %s session %s on %s", spark.version, app_name, spark.sparkContext.master)
    return spark


def graphframes_jar_loaded(spark: SparkSession) -> bool:
    """Whether GraphFrames' JVM classes can be loaded by this session."""
    try:
        loader = spark.sparkContext._jvm.Thread.currentThread().getContextClassLoader()  # type: ignore[union-attr]
        loader.loadClass("org.graphframes.GraphFramePythonAPI")
        return True
    except Exception:  # noqa: BLE001 - py4j raises a generic error for a missing class
        return False
