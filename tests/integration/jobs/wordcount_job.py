"""A small PySpark job for testing the local Spark cluster: count words, write CSV.

    spark-submit --master spark://127.0.0.1:PORT wordcount_job.py INPUT_TEXT OUTPUT_DIR

The master comes from spark-submit, never from this file. The input is split into several
partitions so both executors of a two-worker cluster get tasks.
"""

from __future__ import annotations

import argparse
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger(__name__)


def word_counts(lines: DataFrame) -> DataFrame:
    """(word, count) of the lower-cased words of a `value` text column."""
    words = lines.select(F.explode(F.split(F.lower(F.col("value")), r"\s+")).alias("word"))
    return words.where(F.col("word") != "").groupBy("word").count()


def main() -> None:
    """Read the text file, count its words, write one CSV (with a header) into the output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    spark = SparkSession.builder.appName("wordcount-test").getOrCreate()
    try:
        lines = spark.read.text(args.input).repartition(4)
        counts = word_counts(lines)
        counts.coalesce(1).write.mode("overwrite").option("header", True).csv(args.output)
        log.info("wrote word counts to %s", args.output)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
