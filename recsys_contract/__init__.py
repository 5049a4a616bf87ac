"""The contract every part of recsys-stream shares, with no framework in it.

- `events`: the sales event on the Kafka topic (field names, required fields) and the
  quarantine's reasons and columns;
- `runs`: the published run (folders, files, CSV columns, metric names, the `latest`
  pointer, the typed manifest and metrics);
- `status`: the streaming job's status file (`results/status.json`) that `scripts/status`
  reads;
- `config`: every setting of every part, read from conf/defaults.yaml plus overrides and
  validated once (pydantic and PyYAML, no Spark);
- `errors`: the base of every named error.

The producer, the visualizer, the demo and the API server import only this package (and their
own libraries); the Spark job builds its schemas from it. Nothing here imports pyspark.
"""
