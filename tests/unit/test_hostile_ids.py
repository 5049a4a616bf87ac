"""Defect 1 of issue 26: every id the validator accepts comes back the same from every exported
CSV (written by Spark's real CSV writer, in parallel parts) through pandas, Python's csv
module and the visualizer."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from producer.hostile import HOSTILE_IDS, hostile_records
from recsys_contract.events import is_blank
from recsys_contract.runs import (
    EDGES_CSV,
    POPULAR_CSV,
    RUNS_DIR,
    VERTICES_CSV,
    EventCounts,
    GraphFigures,
    KafkaSpan,
    Manifest,
    Metrics,
)
from spark_app import schema as S
from spark_app.stream.validate import classify
from spark_app.training.export import write_csv
from tests.visualize_fixtures import shown_ids
from visualize.loading import load_run
from visualize.plots import PlotOptions
from visualize.report import render_run

RUN_ID = "20261203T100000Z-000001"


def write_hostile_run(spark, results: Path, ids: tuple[str, ...]) -> Path:
    """A published run whose users and products are `ids`: each user is recommended the
    product of the same id; its CSVs written by export.write_csv from 3 Spark partitions."""
    vertices = [(f"u:{i}", "user", i, 0, 1, 0.01) for i in ids]
    vertices += [(f"p:{i}", "product", i, 1, 0, 0.02) for i in ids]
    edges = [(f"u:{i}", f"p:{i}", 0.5, 1) for i in ids]
    popular = [(n + 1, i, 3, 4) for n, i in enumerate(ids)]
    run = results / RUNS_DIR / RUN_ID
    run.mkdir(parents=True)
    for name, rows, schema in (
        (VERTICES_CSV, vertices, "id string, type string, label string, in_degree long, "
                                 "out_degree long, pagerank double"),
        (EDGES_CSV, edges, "src string, dst string, score float, rank int"),
        (POPULAR_CSV, popular, "rank int, product_id string, purchases long, quantity long"),
    ):
        write_csv(spark.createDataFrame(rows, schema).repartition(3), run / name)
    metrics = Metrics(k=10, split="random", test_users=1, model={}, baseline={},
                      accept_metric="ndcg_at_k", accept_margin=0.0, accepted=True,
                      graph=GraphFigures(2 * len(ids), len(ids), len(ids), len(ids), len(ids)))
    manifest = Manifest(run_id=RUN_ID, sequence=1, created_at="2026-12-03T10:00:00Z",
                        accepted=True, reason="test", events=EventCounts(1, 1, 1),
                        window_events=0, kafka=KafkaSpan("sales"))
    (run / "metrics.json").write_text(metrics.to_json())
    (run / "manifest.json").write_text(manifest.to_json())
    return run


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hostile_run(spark, tmp_path_factory.mktemp("results"), HOSTILE_IDS)


def test_the_hostile_ids_are_ids_the_validator_accepts() -> None:
    assert [i for i in HOSTILE_IDS if is_blank(i)] == []


def test_pythons_csv_module_reads_back_every_id(run: Path) -> None:
    with (run / VERTICES_CSV).open(newline="", encoding="utf-8") as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    assert sorted(labels) == sorted(HOSTILE_IDS * 2)


def test_pandas_reads_back_every_id(run: Path) -> None:
    # pandas' C engine cuts a text at NUL (docs/run-format.md): the Python engine reads NUL.
    edges = pd.read_csv(run / EDGES_CSV, dtype=str, keep_default_na=False, engine="python")
    assert sorted(edges["src"]) == sorted(f"u:{i}" for i in HOSTILE_IDS)


def test_the_visualizer_reads_back_every_id(run: Path) -> None:
    loaded = load_run(run)
    assert (sorted(loaded.vertices["label"]), sorted(loaded.edges["dst"]),
            sorted(loaded.popular["product_id"])) == (
        sorted(HOSTILE_IDS * 2), sorted(f"p:{i}" for i in HOSTILE_IDS), sorted(HOSTILE_IDS))


def test_the_report_shows_every_id_it_lists_exactly(run: Path) -> None:
    """Defect 13's report with hostile ids: drawn without error (an id such as `$\\frac$` is
    no formula), and each id shown in the page maps back to exactly that id."""
    rendered = render_run(run.parent.parent, options=PlotOptions(dpi=30))
    shown = shown_ids(rendered.index.read_text(encoding="utf-8"))
    top = rendered.top_products.labels  # the most recommended, beside the popular list
    assert (shown, set(top) <= set(HOSTILE_IDS)) == (
        [item for pair in zip(top, HOSTILE_IDS[:10], strict=True) for item in pair], True)


def test_every_hostile_record_gets_its_reason(spark) -> None:
    """The fuzz corpus (producer/hostile.py) through the job's validation, without Kafka: more
    than 60 kinds, each with the reason it is labelled with, or valid."""
    now = datetime.now(UTC)
    records = hostile_records(now_ms=int(now.timestamp() * 1000))
    raw = spark.createDataFrame(
        [(r.value, "fuzz", 0, offset, now) for offset, r in enumerate(records)],
        "value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    limits = dict(max_message_bytes=10_000, max_quantity=1000, max_future_seconds=3600,
                  min_timestamp=datetime(2000, 1, 1, tzinfo=UTC), rating_range=(0.0, 5.0))
    got = {row[0]: row[1] for row in classify(raw, **limits)
           .select(S.KAFKA_OFFSET, S.REASON).collect()}
    wrong = {r.kind: (r.expected_reason, got[offset]) for offset, r in enumerate(records)
             if got[offset] != r.expected_reason}
    assert (wrong, len({r.kind for r in records}) > 60) == ({}, True)
