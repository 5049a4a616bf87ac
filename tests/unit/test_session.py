"""Which jars a session gets, and what it says when one is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_app.errors import MissingJarError
from spark_app.session import PARSER_JAR, spark_jars


def _jars(folder: Path, *names: str) -> Path:
    (folder / "spark-jars").mkdir(parents=True)
    for name in names:
        (folder / "spark-jars" / name).touch()
    return folder


def test_a_missing_record_parser_jar_says_run_setup(tmp_path: Path) -> None:
    deps = _jars(tmp_path, "spark-sql-kafka-0-10_2.13-4.2.0.jar")
    with pytest.raises(MissingJarError, match=rf"{PARSER_JAR} .*run scripts/setup"):
        spark_jars(deps)


def test_the_parser_jar_goes_to_spark_with_the_kafka_connector(tmp_path: Path) -> None:
    deps = _jars(tmp_path, "spark-sql-kafka-0-10_2.13-4.2.0.jar", PARSER_JAR)
    assert [p.name for p in spark_jars(deps)] == [PARSER_JAR, "spark-sql-kafka-0-10_2.13-4.2.0.jar"]


def test_the_session_runs_the_collector_spark_defaults_asks_for(spark) -> None:
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    names = {bean.getName() for bean in beans.getGarbageCollectorMXBeans()}
    assert names == {"PS Scavenge", "PS MarkSweep"}


def test_the_session_uses_8_mb_memory_pages(spark) -> None:
    # Spark's own choice for this test session (2 cores, 2 GB) would be 32 MB; with a 4 GB
    # driver 64 MB, which filled the old generation and cost a full GC per training cycle.
    env = spark.sparkContext._jvm.org.apache.spark.SparkEnv.get()
    assert env.memoryManager().pageSizeBytes() == 8 * 1024 * 1024


def test_a_local_master_schedules_without_locality_waits(spark) -> None:
    # One executor: a task set mixing cached blocks and HDFS blocks otherwise could leave a
    # task unscheduled for ever (the local backend offers cores only when a task ends).
    assert spark.sparkContext.getConf().get("spark.locality.wait") == "0"
