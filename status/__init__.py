"""`scripts/status`: one screen for an operator without Prometheus, read from the broker and the
published files only (results/status.json, runs/, rejected/, latest), never the job's private
state. It imports the contract, kafka-python and, for results on HDFS, fsspec: no Spark.
"""
