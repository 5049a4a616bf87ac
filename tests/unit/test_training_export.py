"""Export: one CSV file from parts written in parallel, the same bytes coalesce(1) writes; a
run draft that fails leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys_contract.runs import EventCounts, KafkaSpan, Manifest, Metrics
from spark_app.storage import Storage
from spark_app.training.export import CSV_OPTIONS, RunDraft, csv_header, point_latest, write_csv
from tests.run_paths import local, read_latest

METRICS = Metrics(k=10, split="random", test_users=1, model={}, baseline={},
                  accept_metric="ndcg_at_k", accept_margin=0.0, accepted=True)
MANIFEST = Manifest(run_id="run-1", sequence=1, created_at="2026-12-03T00:00:00Z",
                    accepted=True, reason="test", events=EventCounts(1, 1, 1), window_events=0,
                    kafka=KafkaSpan("sales"))


def _single_task_csv(df, folder: Path) -> bytes:
    df.coalesce(1).write.options(**CSV_OPTIONS).option("header", True).csv(str(folder))
    (part,) = sorted(folder.glob("part-*.csv"))
    return part.read_bytes()


def test_csv_from_parallel_parts_equals_the_single_task_file(spark, tmp_path: Path) -> None:
    rows = [(i, f"u{i}", 0.1 * i, "a,b" if i % 5 == 0 else 'say "x"' if i % 7 == 0 else "")
            for i in range(200)]  # fmt: skip
    df = spark.createDataFrame(rows, "n int, id string, score double, note string")
    df = df.repartition(4).cache()
    assert df.rdd.getNumPartitions() == 4
    write_csv(df, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == _single_task_csv(df, tmp_path / "one")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "out.csv"]


def test_spaces_around_an_id_are_kept(spark, tmp_path: Path) -> None:
    df = spark.createDataFrame([(" u1 ", "p 2")], "src string, dst string")
    write_csv(df, tmp_path / "edges.csv")
    assert (tmp_path / "edges.csv").read_text() == "src,dst\n u1 ,p 2\n"


def test_empty_table_gives_the_header_alone(spark, tmp_path: Path) -> None:
    df = spark.createDataFrame([], "id string, rank int")
    write_csv(df, tmp_path / "empty.csv")
    assert (tmp_path / "empty.csv").read_text() == "id,rank\n"


def test_header_quotes_only_what_needs_it() -> None:
    assert csv_header(["id", "a,b", 'q"']) == 'id,"a,b","q"""\n'


def test_a_draft_left_by_an_error_is_removed_with_what_it_wrote(spark, tmp_path: Path) -> None:
    df = spark.createDataFrame([("u1", 1)], "id string, rank int")
    with pytest.raises(RuntimeError, match="graph failed"), RunDraft(tmp_path, "run-1") as draft:
        draft.write_csv("edges.csv", df)  # written in the background meanwhile
        raise RuntimeError("graph failed")
    assert list(tmp_path.iterdir()) == []


def test_a_draft_publishes_every_file_it_started(spark, tmp_path: Path) -> None:
    df = spark.createDataFrame([("u1", 1)], "id string, rank int")
    with RunDraft(tmp_path, "run-1") as draft:
        draft.write_csv("edges.csv", df)
        path = draft.publish(METRICS, MANIFEST)
    assert sorted(p.name for p in local(path).iterdir()) == [
        "edges.csv",
        "manifest.json",
        "metrics.json",
    ]


def test_latest_is_a_pointer_file_that_replaces_an_old_symlink(spark, tmp_path: Path) -> None:
    (tmp_path / "runs" / "run-1").mkdir(parents=True)
    (tmp_path / "runs" / "run-2").mkdir(parents=True)
    (tmp_path / "latest").symlink_to(Path("runs") / "run-1")
    before = read_latest(tmp_path)
    point_latest(Storage(spark), str(tmp_path), "run-2")
    pointer = tmp_path / "latest"
    assert (before, pointer.is_symlink(), pointer.read_text(), read_latest(tmp_path)) == (
        "run-1", False, "run-2\n", "run-2")
