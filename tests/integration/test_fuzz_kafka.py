"""The fuzz test of issue 26: more than 60 kinds of hostile record (producer/hostile.py) on a
real broker, read by the job's streaming query (its batch handler and trainer, wired from a
settings file as spark_app/main.py wires them, in the tests' Spark session), which trains and
publishes a run. The query never stops; valid + quarantined = sent, each bad record with its
reason and its bytes; every exported CSV and the HTML report give back every accepted id."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from kafka import KafkaProducer

from infra.wait import wait_until
from producer.hostile import corpus_ids, hostile_records
from recsys_contract.config import AppConfig, load_config
from recsys_contract.events import (
    EVENT_ID,
    KAFKA_OFFSET,
    RAW_VALUE,
    RAW_VALUE_BYTES,
    RAW_VALUE_TRUNCATED,
    REASON,
)
from recsys_contract.runs import EDGES_CSV, POPULAR_CSV, REJECTED_DIR, RUNS_DIR, VERTICES_CSV
from spark_app.stream.batch import BatchProcessor, BatchSettings
from spark_app.stream.job import kafka_stream
from spark_app.stream.trainers import trainer_for
from tests.kafka_helpers import create_topic
from tests.visualize_fixtures import shown_ids
from visualize.loading import latest_run_id, load_run
from visualize.plots import PlotOptions
from visualize.report import render_run

pytestmark = pytest.mark.integration
QUARANTINE_CAP = 1000  # stream.quarantine_max_bytes here: the 600 kB record is cut


def job_config(tmp_path: Path, bootstrap: str, topic: str, threshold: int) -> Path:
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "topic": topic, "max_offsets_per_trigger": 60},
        "stream": {"trigger_interval_seconds": 0, "quarantine_max_bytes": QUARANTINE_CAP},
        "training": {"threshold": threshold},
        "paths": {"results": str(tmp_path / "results"), "state": str(tmp_path / "state")},
        "als": {"rank": 4, "max_iter": 3},
        # a tiny data set: accept on coverage, which the model wins (the baseline lists the
        # same products to everyone), so that the run is published with its CSVs
        "evaluation": {"accept_metric": "coverage", "accept_margin": 0.99},
        "recommend": {"top_n": 5},
        "spark": {"master": "local[2]", "shuffle_partitions": 2,
                  "extra_conf": {"spark.ui.enabled": "false"}},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def send(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    """Every value (None: a record without one) in order on one partition, acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             max_request_size=2 << 20)
    try:
        # kafka-python sends a record without a value only with a key
        futures = [producer.send(topic, value=value, key=None if value is not None else b"k")
                   for value in values]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


def processor_for(cfg: AppConfig) -> BatchProcessor:
    """The job's batch handler and trainer, wired from `cfg` as spark_app/main.py does."""
    return BatchProcessor(BatchSettings.from_config(cfg), trainer_for(cfg))


def test_hostile_records_on_a_real_broker(spark, kafka, tmp_path: Path) -> None:
    records = hostile_records(now_ms=time.time_ns() // 1_000_000)
    event_ids, users, products = corpus_ids(records)
    valid = [r for r in records if r.expected_reason is None]
    topic = "fuzz"
    create_topic(kafka.bootstrap_servers, topic, partitions=1)  # offset = position in `records`
    cfg = load_config(job_config(tmp_path, kafka.bootstrap_servers, topic, len(valid)))
    state, results = Path(cfg.paths.state), Path(cfg.paths.results)
    half = len(records) // 2
    send(kafka.bootstrap_servers, topic, [r.value for r in records[:half]])
    processor = processor_for(cfg)
    stream = kafka_stream(spark, bootstrap_servers=cfg.kafka.bootstrap_servers, topic=topic,
                          starting_offsets="earliest",
                          max_offsets_per_trigger=cfg.kafka.max_offsets_per_trigger,
                          fail_on_data_loss=True, consumer_options=cfg.kafka.consumer_options)
    query = (stream.writeStream.foreachBatch(processor.process)
             .option("checkpointLocation", str(state / "checkpoint")).start())

    def alive() -> None:
        if not query.isActive:
            raise AssertionError(f"the job stopped: {query.exception()}")

    def processed() -> bool:
        alive()
        ledger = processor.ledger
        return ledger.total_valid + ledger.total_quarantined >= len(records)

    def published() -> bool:
        alive()
        rejected = list((results / REJECTED_DIR).glob("*"))
        if rejected:
            raise AssertionError(f"the run was rejected: {rejected}")
        return latest_run_id(results) is not None

    try:
        send(kafka.bootstrap_servers, topic, [r.value for r in records[half:]])
        wait_until(processed, 300, "every record to be stored or quarantined")
        ledger = processor.ledger
        assert (ledger.total_valid, ledger.total_quarantined) == (len(valid),
                                                                  len(records) - len(valid))
        wait_until(published, 300, "the training run to be published")
        alive()  # the job never stopped
    finally:
        query.stop()

    # each bad record quarantined with its reason, its bytes kept up to the cap
    quarantine = pd.read_parquet(results / "quarantine", columns=[
        KAFKA_OFFSET, REASON, RAW_VALUE, RAW_VALUE_BYTES, RAW_VALUE_TRUNCATED])
    got = dict(zip(quarantine[KAFKA_OFFSET], quarantine[REASON], strict=True))
    expected = {i: r.expected_reason for i, r in enumerate(records) if r.expected_reason}
    wrong = {records[i].kind: (reason, got.get(i)) for i, reason in expected.items()
             if got.get(i) != reason}
    assert (wrong, len(got)) == ({}, len(expected))
    kept = {int(row[KAFKA_OFFSET]): row for _, row in quarantine.iterrows()}
    for offset, record in enumerate(records):
        if record.expected_reason and record.value is not None:
            row = kept[offset]
            assert (row[RAW_VALUE], row[RAW_VALUE_BYTES], row[RAW_VALUE_TRUNCATED]) == (
                record.value[:QUARANTINE_CAP], len(record.value),
                len(record.value) > QUARANTINE_CAP), record.kind

    # every valid event stored under its own id
    stored = {eid for file in (state / "events").glob("batch_id=*/seq_base=*/*.parquet")
              for eid in pq.read_table(file, columns=[EVENT_ID]).column(EVENT_ID).to_pylist()}
    assert stored == event_ids

    # every accepted id from every CSV: Python's csv module, and the visualizer (pandas)
    run = results / RUNS_DIR / str(latest_run_id(results))

    def column(name: str, field: str) -> list[str]:
        with (run / name).open(newline="", encoding="utf-8") as handle:
            return [row[field] for row in csv.DictReader(handle)]

    labels = list(zip(column(VERTICES_CSV, "type"), column(VERTICES_CSV, "label"), strict=True))
    assert sorted(labels) == sorted([("user", u) for u in users]
                                    + [("product", p) for p in products])
    assert {s.removeprefix("u:") for s in column(EDGES_CSV, "src")} <= users
    assert {d.removeprefix("p:") for d in column(EDGES_CSV, "dst")} <= products
    assert set(column(POPULAR_CSV, "product_id")) == products
    loaded = load_run(run)
    assert (sorted(loaded.vertices["label"]), set(loaded.popular["product_id"])) == (
        sorted([*users, *products]), products)

    # the report shows each id it lists exactly (top products beside the popular list)
    rendered = render_run(results, options=PlotOptions(dpi=30))
    shown = shown_ids(rendered.index.read_text(encoding="utf-8"))
    assert (len(shown), set(shown) <= products) == (2 * len(rendered.top_products.labels), True)
