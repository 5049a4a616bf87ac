"""Finding and reading published runs: the happy path and every half-written case."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from tests.visualize_fixtures import write_rejected, write_run
from visualize.errors import (
    EmptyRunError,
    IncompleteRunError,
    NoPublishedRunError,
    ResultsNotFoundError,
    RunNotFoundError,
)
from visualize.loading import load_history, load_run, resolve_run


def test_latest_follows_the_pointer(tmp_path: Path) -> None:
    first = write_run(tmp_path, sequence=1)
    second = write_run(tmp_path, sequence=2)
    assert resolve_run(tmp_path).name == second.run_id
    assert resolve_run(tmp_path, first.run_id) == first.path


def test_latest_of_the_older_layout_a_symlink_still_works(tmp_path: Path) -> None:
    first = write_run(tmp_path, sequence=1, update_latest=False)
    write_run(tmp_path, sequence=2, update_latest=False)
    (tmp_path / "latest").symlink_to(Path("runs") / first.run_id)
    assert resolve_run(tmp_path).name == first.run_id


def test_latest_falls_back_to_newest_run_without_link(tmp_path: Path) -> None:
    write_run(tmp_path, sequence=1, update_latest=False)
    newest = write_run(tmp_path, sequence=2, update_latest=False)
    assert resolve_run(tmp_path).name == newest.run_id


def test_missing_results_dir(tmp_path: Path) -> None:
    with pytest.raises(ResultsNotFoundError, match="results directory not found: .*nowhere"):
        resolve_run(tmp_path / "nowhere")


def test_missing_run_id_names_it_and_the_newest(tmp_path: Path) -> None:
    newest = write_run(tmp_path, sequence=1)
    with pytest.raises(RunNotFoundError) as err:
        resolve_run(tmp_path, "20990101T000000Z-000042")
    assert "run 20990101T000000Z-000042 not found" in str(err.value)
    assert newest.run_id in str(err.value)


def test_only_a_run_being_written_means_no_published_run(tmp_path: Path) -> None:
    pending = write_run(tmp_path, sequence=1, publish=False)
    with pytest.raises(NoPublishedRunError, match="no published run yet") as err:
        resolve_run(tmp_path)
    assert f".tmp-{pending.run_id}" in str(err.value)
    with pytest.raises(IncompleteRunError, match="still being written"):
        resolve_run(tmp_path, pending.run_id)


def test_hidden_names_are_never_run_ids(tmp_path: Path) -> None:
    pending = write_run(tmp_path, sequence=1, publish=False)
    with pytest.raises(RunNotFoundError, match="not a run id"):
        resolve_run(tmp_path, pending.path.name)
    with pytest.raises(IncompleteRunError, match="being written"):
        load_run(pending.path)


def test_rejected_run_id_says_it_was_rejected(tmp_path: Path) -> None:
    write_run(tmp_path, sequence=1)
    rejected = write_rejected(tmp_path, sequence=2)
    with pytest.raises(RunNotFoundError, match="was rejected"):
        resolve_run(tmp_path, rejected)


@pytest.mark.parametrize("name", ["metrics.json", "manifest.json", "edges.csv", "vertices.csv"])
def test_missing_file_is_named(tmp_path: Path, name: str) -> None:
    run = write_run(tmp_path, sequence=1)
    (run.path / name).unlink()
    with pytest.raises(IncompleteRunError, match=f"incomplete: {name} is missing"):
        load_run(run.path)


def test_truncated_json_is_named(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    text = (run.path / "metrics.json").read_text()
    (run.path / "metrics.json").write_text(text[: len(text) // 2])
    with pytest.raises(IncompleteRunError, match="metrics.json is not valid JSON"):
        load_run(run.path)


def test_csv_cut_mid_line(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    data = (run.path / "edges.csv").read_bytes()
    (run.path / "edges.csv").write_bytes(data[: len(data) // 2])
    with pytest.raises(IncompleteRunError, match="edges.csv ends mid-line"):
        load_run(run.path)


def test_csv_row_with_missing_fields(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    with (run.path / "edges.csv").open("a") as handle:
        handle.write("u:U000001,p:P00001\n")
    with pytest.raises(IncompleteRunError, match="edges.csv"):
        load_run(run.path)


def test_csv_cut_at_a_line_end_is_caught_by_the_declared_count(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    lines = (run.path / "edges.csv").read_text().splitlines(keepends=True)
    (run.path / "edges.csv").write_text("".join(lines[:-7]))
    with pytest.raises(IncompleteRunError, match="has 143 rows but metrics.json declares 150"):
        load_run(run.path)


def test_csv_missing_column(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    run.edges.drop(columns="score").to_csv(run.path / "edges.csv", index=False)
    with pytest.raises(IncompleteRunError, match="edges.csv lacks column.s. score"):
        load_run(run.path)


def test_empty_csv_file(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    (run.path / "vertices.csv").write_text("")
    with pytest.raises(IncompleteRunError, match="vertices.csv is empty"):
        load_run(run.path)


def test_run_without_edges_is_empty(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    (run.path / "edges.csv").write_text("src,dst,score,rank\n")
    metrics = dict(run.metrics, graph=dict(run.metrics["graph"], edges=0))
    (run.path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(EmptyRunError, match="no recommendation edges"):
        load_run(run.path)


def test_part_folders_read_like_single_files(tmp_path: Path) -> None:
    single = load_run(write_run(tmp_path / "a", sequence=1).path)
    parted = write_run(tmp_path / "b", sequence=1, parts=3)
    assert (parted.path / "edges.csv").is_dir()
    loaded = load_run(parted.path)
    pd.testing.assert_frame_equal(loaded.edges, single.edges)
    pd.testing.assert_frame_equal(loaded.vertices, single.vertices)


def test_ids_that_look_numeric_stay_strings(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    vertices = run.vertices.assign(label=run.vertices["label"].str.replace("P", "00"))
    vertices.to_csv(run.path / "vertices.csv", index=False)
    loaded = load_run(run.path)
    assert loaded.vertices["label"].iloc[-1] == vertices["label"].iloc[-1]
    assert loaded.vertices["label"].iloc[-1].startswith("0000")


def test_history_has_one_row_per_run_with_status(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, sequence=s) for s in (1, 2)]
    rejected = write_rejected(tmp_path, sequence=3)
    history = load_history(tmp_path)
    assert history["run_id"].tolist() == [runs[0].run_id, runs[1].run_id, rejected]
    assert history["status"].tolist() == ["published", "published", "rejected"]
    assert history["model_ndcg_at_k"].tolist() == [
        r.metrics["model"]["ndcg_at_k"] for r in runs
    ] + [0.09]
    assert history["baseline_rmse"].isna().all()


def test_history_skips_an_unreadable_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = write_run(tmp_path, sequence=1)
    bad = write_run(tmp_path, sequence=2)
    (bad.path / "metrics.json").unlink()
    with caplog.at_level(logging.WARNING):
        history = load_history(tmp_path)
    assert history["run_id"].tolist() == [good.run_id]
    assert "metrics.json is missing" in caplog.text
