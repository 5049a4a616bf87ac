"""The storage seam on the local disk: URIs, atomic small files, footers, start-up checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_app.errors import UnsupportedStorageError
from spark_app.storage import Storage, join


@pytest.fixture(scope="module")
def storage(spark) -> Storage:
    return Storage(spark)


def test_a_plain_path_is_the_local_disk_and_is_created(storage, tmp_path: Path) -> None:
    root = storage.check_root(tmp_path / "state", "paths.state")
    assert (root, (tmp_path / "state").is_dir()) == (f"file:{tmp_path}/state", True)


@pytest.mark.parametrize(("uri", "message"), [
    ("s3a://bucket/state", "s3a:// has no atomic rename"),
    ("gs://bucket/state", "gs:// has no atomic rename"),
    ("foo://somewhere/state", "no Hadoop filesystem for scheme 'foo'"),
])
def test_a_filesystem_without_atomic_rename_is_refused(storage, uri: str, message: str) -> None:
    with pytest.raises(UnsupportedStorageError, match=message):
        storage.check_root(uri, "paths.state")


def test_a_small_file_is_replaced_whole_and_leaves_nothing_beside_it(storage, tmp_path) -> None:
    ledger = join(storage.qualify(tmp_path), "ledger.json")
    storage.write_atomic(ledger, "old\n")
    storage.write_atomic(ledger, "new\n")
    assert (storage.read_text(ledger), sorted(p.name for p in tmp_path.iterdir())) == (
        "new\n", ["ledger.json"])


def test_footers_give_rows_and_min_max_without_reading_rows(spark, storage, tmp_path) -> None:
    spark.range(10, 20, numPartitions=1).selectExpr("id", "id * 2 AS twice").write.parquet(
        str(tmp_path / "t"))
    files = storage.glob(join(storage.qualify(tmp_path / "t"), "*.parquet"))
    (stats,) = storage.parquet_stats(files, ["id", "twice"])
    assert (stats.rows, stats.mins, stats.maxs) == (10, {"id": [10], "twice": [20]},
                                                    {"id": [19], "twice": [38]})
