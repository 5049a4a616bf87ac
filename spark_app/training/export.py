"""Export: write a run under results/.tmp-<run_id>, publish it by one rename, move `latest`.

A reader never sees a half-written run: until the rename the run is a dot-folder (readers
ignore those); `latest` is a pointer file replaced with os.replace. A crash mid-export leaves only
the .tmp-<run_id> folder, removed by clean_stale_tmp() at the start of the next run.
Layout and file formats: docs/run-format.md.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame

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


def tmp_dir(results: Path, run_id: str) -> Path:
    """Where a run is written before it is published."""
    return results / f"{TMP_PREFIX}{run_id}"


def clean_stale_tmp(results: Path) -> list[Path]:
    """Remove .tmp-* folders left by runs that crashed; return what was removed."""
    removed = []
    if results.is_dir():
        for stale in sorted(results.glob(f"{TMP_PREFIX}*")):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    if removed:
        log.warning("removed %d stale partial run(s): %s", len(removed), [p.name for p in removed])
    return removed


def write_json(document: Manifest | Metrics, path: Path) -> None:
    """Write a run's manifest or metrics as indented JSON (NaN -> null)."""
    path.write_text(document.to_json())


def csv_header(columns: list[str]) -> str:
    """The header line Spark's CSV writer puts above `columns` (quoted only where needed)."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(columns)
    return line.getvalue()


def concat_parts(parts: list[Path], header: str, path: Path) -> None:
    """Write `header` then the bytes of every part, in order, to `path` (via a temporary name
    in the same folder, renamed into place)."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
    with tmp.open("wb") as out:
        out.write(header.encode("utf-8"))
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    os.rename(tmp, path)


def write_csv(df: DataFrame, path: Path, rows: int | None = None) -> None:
    """`df` as one CSV file with a header at `path` (a folder of parts beyond the row limit).

    Every partition writes its own part (no header) in parallel, and the parts are joined in
    partition order behind one header line: the file coalesce(1) would write, without making
    one task format every row.
    """
    writer = df.write.options(**CSV_OPTIONS)
    if rows is not None and rows > SINGLE_CSV_MAX_ROWS:
        writer.option("header", True).csv(str(path))
        return
    parts = path.parent / f".{path.name}.parts"
    writer.option("header", False).mode("overwrite").csv(str(parts))
    concat_parts(sorted(parts.glob("part-*.csv")), csv_header(df.columns), path)
    shutil.rmtree(parts)


def save_model(model: ALSModel, path: Path) -> None:
    """Save the ALS model (ALSModel.load(path) reads it)."""
    model.write().overwrite().save(str(path))


def publish(tmp: Path, final: Path) -> None:
    """Move a complete run folder into place with one rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise FileExistsError(f"{final} already exists; run ids must be unique")
    os.rename(tmp, final)


def point_latest(results: Path, run_id: str) -> None:
    """Make the results/latest pointer name `run_id`, replacing it atomically (a reader sees
    the old or the new id). An older layout's `latest` symlink is replaced the same way."""
    link = results / LATEST
    tmp = results / f"{TMP_PREFIX}latest-{uuid.uuid4().hex[:8]}"
    tmp.write_text(format_latest(run_id))
    if link.is_symlink():
        log.info("results/latest was a symlink (older layout): now a pointer file")
    os.replace(tmp, link)


def latest_run_id(results: Path) -> str | None:
    """The run `latest` names, or None."""
    link = results / LATEST
    if link.is_symlink():  # the older layout
        return os.readlink(link).rstrip("/").split("/")[-1]
    return parse_latest(link.read_text()) if link.is_file() else None


class RunDraft:
    """A run being written under results/.tmp-<run_id>, each file in the background as soon as
    its data is ready (Spark runs the jobs side by side, filling the cores while the driver
    plans the next stage); publish() waits for every file, writes metrics and manifest, and
    publishes the run. Leaving a `with` block by an exception removes the draft.
    """

    def __init__(self, results: Path, run_id: str, *, workers: int = 4) -> None:
        self.results = results
        self.run_id = run_id
        self.path = tmp_dir(results, run_id)
        self.path.mkdir(parents=True, exist_ok=False)
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
        self._writes.append(self._pool.submit(write_csv, df, self.path / name, rows))

    def save_model(self, model: ALSModel) -> None:
        """Start saving the ALS model under model/."""
        self._writes.append(self._pool.submit(save_model, model, self.path / MODEL_DIR))

    def write_parquet(self, name: str, df: DataFrame) -> None:
        """Start writing `df` as the run's Parquet folder `name` (a relative path; Spark's
        _SUCCESS marker last)."""
        self._writes.append(self._pool.submit(df.write.parquet, str(self.path / name)))

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
        shutil.rmtree(self.path, ignore_errors=True)

    def publish(
        self,
        metrics: Metrics,
        manifest: Manifest,
        timings: dict[str, float] | None = None,
        cycle_started: float | None = None,
    ) -> Path:
        """Wait for every file, write metrics and manifest, publish under runs/, move `latest`.

        If `timings` (the manifest's timings_seconds) is given, its "export" (from the draft's
        start: it overlaps the stages that ran meanwhile) and "total" (from `cycle_started`, a
        perf_counter value) are filled in just before the manifest is written.
        """
        self._wait()
        write_json(metrics, self.path / METRICS)
        if timings is not None:
            now = time.perf_counter()
            timings["export"] = round(now - self.started, 3)
            if cycle_started is not None:
                timings["total"] = round(now - cycle_started, 3)
        write_json(manifest, self.path / MANIFEST)
        final = self.results / RUNS_DIR / self.run_id
        publish(self.path, final)
        point_latest(self.results, self.run_id)
        log.info("published run %s at %s; latest -> %s", self.run_id, final, self.run_id)
        return final


def export_rejected(
    results: Path, run_id: str, *, metrics: Metrics, manifest: Manifest
) -> Path:
    """Write metrics and manifest of a rejected run under rejected/; `latest` is left alone."""
    tmp = tmp_dir(results, run_id)
    tmp.mkdir(parents=True, exist_ok=False)
    write_json(metrics, tmp / METRICS)
    write_json(manifest, tmp / MANIFEST)
    final = results / REJECTED_DIR / run_id
    publish(tmp, final)
    log.info("rejected run %s recorded at %s; latest unchanged", run_id, final)
    return final
