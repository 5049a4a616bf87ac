"""The recommendations API: the latest published run over HTTP, with purchases folded in.

- `app`: the FastAPI app and its thin routes; `cli`: scripts/serve;
- `model`: the served model (answers, fold-in state), `foldin`: its numpy math;
- `manager`: the served model's reference and the watcher that loads new runs;
- `speed`: the Kafka speed layer; `loading`/`files`: reading a run; `metrics`: Prometheus.

Imports nothing from pyspark or spark_app: only recsys_contract and its own libraries.
docs/serve.md describes the endpoints, settings, fold-in and reload.
"""
