"""Export: write a run under results/.tmp-<run_id>, publish it by one rename, move `latest`.

A reader never sees a half-written run: until the rename the run is a dot-folder (readers
ignore those); `latest` is a small pointer file (recsys_contract.runs) replaced
atomically. A crash mid-export leaves only the .tmp-<run_id> folder, removed by
clean_stale_tmp() at the start of the next run. A crash after the rename, before the job's
ledger records the run, leaves a published run that `find_published` finds again, so the
restart records it instead of publishing the same training sequence twice.
Every file operation goes through spark_app/storage.py: results may be on any Hadoop
filesystem with atomic rename. Layout and file formats: docs/run-format.md.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession

from recsys_contract.runs import (
    LATEST,
    MANIFEST,
    METRICS,
    MODEL_DIR,
    REJECTED_DIR,
    RUNS_DIR,
    TMP_PREFIX,
    Manifest,
    Metrics,
    format_latest,
    parse_latest,
)
from spark_app.storage import Storage, join, name_of, parent_of

log = logging.getLogger(__name__)

# Up to this many rows a CSV is one file (one task writes it); above, a folder of part files
# each with the header, as docs/run-format.md allows.
SINGLE_CSV_MAX_ROWS = 5_000_000
# RFC 4180, so that any id the validator accepts comes back the same from pandas or Python's
# csv module (docs/run-format.md): a `"` inside a field is doubled (Spark's default escapes it
# with a backslash, which neither reads), and a field holding `"`, the comma, CR or LF is
# quoted (Spark does that by itself). Spark also trims the spaces around every text by
# default: an id " u1 " would be written as u1, no longer the id of the events.
CSV_OPTIONS: dict[str, str] = {
    "quote": '"',
    "escape": '"',
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
}


def tmp_dir(results: str, run_id: str) -> str:
    """Where a run is written before it is published."""
    return join(results, f"{TMP_PREFIX}{run_id}")


def clean_stale_tmp(storage: Storage, results: str) -> list[str]:
    """Remove .tmp-* folders left by runs that crashed; return the names removed."""
    removed = []
    for stale in storage.list(results):
        if stale.name.startswith(TMP_PREFIX):
            storage.delete(stale.path)
            removed.append(stale.name)
    if removed:
        log.warning("removed %d stale partial run(s): %s", len(removed), removed)
    return removed


def write_json(storage: Storage, document: Manifest | Metrics, path: str) -> None:
    """Write a run's manifest or metrics as indented JSON (NaN -> null)."""
    storage.write_bytes(path, document.to_json().encode("utf-8"))


def csv_header(columns: list[str]) -> str:
    """The header line Spark's CSV writer puts above `columns` (quoted only where needed)."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(columns)
    return line.getvalue()


def write_csv(
    df: DataFrame, path: str | Path, rows: int | None = None, storage: Storage | None = None
) -> None:
    """`df` as one CSV file with a header at `path` (a folder of parts beyond the row limit).

    Every partition writes its own part (no header) in parallel, and the parts are joined in
    partition order behind one header line: the file coalesce(1) would write, without making
    one task format every row.
    """
    storage = storage or Storage(df.sparkSession)
    path = storage.qualify(path)
    writer = df.write.options(**CSV_OPTIONS)
    if rows is not None and rows > SINGLE_CSV_MAX_ROWS:
        writer.option("header", True).csv(path)
        return
    parts = join(parent_of(path), f".{name_of(path)}.parts")
    writer.option("header", False).mode("overwrite").csv(parts)
    storage.concat(csv_header(df.columns).encode("utf-8"),
                   storage.glob(join(parts, "part-*.csv")), path)
    storage.delete(parts)


def save_model(model: ALSModel, path: str) -> None:
    """Save the ALS model (ALSModel.load(path) reads it)."""
    model.write().overwrite().save(path)


def publish(storage: Storage, tmp: str, final: str) -> None:
    """Move a complete run folder into place with one rename."""
    storage.mkdirs(parent_of(final))
    if storage.exists(final):
        raise FileExistsError(f"{final} already exists; run ids must be unique")
    storage.rename(tmp, final)


def point_latest(storage: Storage, results: str, run_id: str) -> None:
    """Make the pointer file results/latest name `run_id`, replacing it atomically (an old
    `latest` symlink of earlier versions is replaced by the file)."""
    pointer = join(results, LATEST)
    if storage.is_symlink(pointer):
        log.info("replacing the old symlink %s with a pointer file (docs/run-format.md)", pointer)
    storage.write_atomic(pointer, format_latest(run_id))


def latest_run_id(storage: Storage, results: str) -> str | None:
    """The run `latest` names (pointer file, or the symlink of earlier versions), or None."""
    pointer = join(results, LATEST)
    target = storage.symlink_target(pointer)
    if target is not None:
        return name_of(target)
    text = storage.read_text(pointer)
    return None if text is None else parse_latest(text)


@dataclass(frozen=True)
class PublishedRun:
    """A run already published for a training sequence (found again after a crash)."""

    run_id: str
    accepted: bool
    path: str


def find_published(
    storage: Storage, results: str, sequence: int, seq_range: tuple[int, int]
) -> PublishedRun | None:
    """The run published (under runs/) or recorded as rejected for training sequence
    `sequence` over events [first_seq, cut) = `seq_range`, if any.

    A run folder only appears complete (one rename), so one found is whole; its manifest's
    sequence and range must match, so an older store's run of the same number is not taken.
    """
    suffix = f"-{sequence:06d}"
    for folder, accepted in ((RUNS_DIR, True), (REJECTED_DIR, False)):
        for entry in storage.list(join(results, folder)):
            if not entry.is_dir or not entry.name.endswith(suffix) or entry.name[:1] == ".":
                continue
            text = storage.read_text(join(entry.path, MANIFEST))
            manifest = json.loads(text) if text else {}
            if manifest.get("sequence") == sequence and manifest.get("seq_range") == list(
                    seq_range):
                return PublishedRun(entry.name, accepted, entry.path)
    return None


class RunDraft:
    """A run being written under results/.tmp-<run_id>, each file in the background as soon as
    its data is ready (Spark runs the jobs side by side, filling the cores while the driver
    plans the next stage); publish() waits for every file, writes metrics and manifest, and
    publishes the run. Leaving a `with` block by an exception removes the draft.
    """

    def __init__(self, results: str | Path, run_id: str, *, workers: int = 4,
                 storage: Storage | None = None) -> None:
        self.storage = storage or Storage(SparkSession.active())
        self.results = self.storage.qualify(results)
        self.run_id = run_id
        self.path = tmp_dir(self.results, run_id)
        if self.storage.exists(self.path):
            raise FileExistsError(f"{self.path} already exists; run ids must be unique")
        self.storage.mkdirs(self.path)
        self.started = time.perf_counter()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export")
        self._writes: list[Future[None]] = []

    def __enter__(self) -> RunDraft:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.discard()

    def write_csv(self, name: str, df: DataFrame, rows: int | None = None) -> None:
        """Start writing `df` as the run's CSV `name` (see write_csv; `rows`: an upper bound)."""
        self._writes.append(
            self._pool.submit(write_csv, df, join(self.path, name), rows, self.storage))

    def save_model(self, model: ALSModel) -> None:
        """Start saving the ALS model under model/."""
        self._writes.append(self._pool.submit(save_model, model, join(self.path, MODEL_DIR)))

    def write_parquet(self, name: str, df: DataFrame) -> None:
        """Start writing `df` as the run's Parquet folder `name` (a relative path; Spark's
        _SUCCESS marker last)."""
        self._writes.append(self._pool.submit(df.write.parquet, join(self.path, name)))

    def _wait(self) -> None:
        try:
            for done in self._writes:
                done.result()  # re-raises the first failure; the run stays unpublished
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def discard(self) -> None:
        """Wait for the writes started (their errors aside) and remove the draft."""
        try:
            self._wait()
        except Exception as error:  # noqa: BLE001 - the draft is thrown away either way
            log.warning("a write of discarded run %s failed too: %s", self.run_id, error)
        try:
            self.storage.delete(self.path)
        except Exception as error:  # noqa: BLE001 - clean_stale_tmp removes it at the next run
            log.warning("could not remove discarded run %s: %s", self.path, error)

    def publish(
        self,
        metrics: Metrics,
        manifest: Manifest,
        timings: dict[str, float] | None = None,
        cycle_started: float | None = None,
    ) -> str:
        """Wait for every file, write metrics and manifest, publish under runs/, move `latest`.

        If `timings` (the manifest's timings_seconds) is given, its "export" (from the draft's
        start: it overlaps the stages that ran meanwhile) and "total" (from `cycle_started`, a
        perf_counter value) are filled in just before the manifest is written.
        """
        self._wait()
        write_json(self.storage, metrics, join(self.path, METRICS))
        if timings is not None:
            now = time.perf_counter()
            timings["export"] = round(now - self.started, 3)
            if cycle_started is not None:
                timings["total"] = round(now - cycle_started, 3)
        write_json(self.storage, manifest, join(self.path, MANIFEST))
        final = join(self.results, RUNS_DIR, self.run_id)
        publish(self.storage, self.path, final)
        point_latest(self.storage, self.results, self.run_id)
        log.info("published run %s at %s; latest -> %s", self.run_id, final, self.run_id)
        return final


def export_rejected(
    storage: Storage, results: str, run_id: str, *, metrics: Metrics, manifest: Manifest
) -> str:
    """Write metrics and manifest of a rejected run under rejected/; `latest` is left alone."""
    tmp = tmp_dir(results, run_id)
    storage.mkdirs(tmp)
    write_json(storage, metrics, join(tmp, METRICS))
    write_json(storage, manifest, join(tmp, MANIFEST))
    final = join(results, REJECTED_DIR, run_id)
    publish(storage, tmp, final)
    log.info("rejected run %s recorded at %s; latest unchanged", run_id, final)
    return final
