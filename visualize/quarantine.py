"""The streaming job's quarantine, counted by reason per training run (pyarrow, no Spark).

The quarantine (``results/quarantine/batch_id=<N>/*.parquet``, recsys_contract.events) holds
one row per bad record. Only its `reason` column is read, one file at a time (files written
before 2026-12-03 hold `raw_value` as text, later ones as bytes: never read together). A
batch belongs to the first run whose manifest's `last_batch_id` is at or after it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys_contract.events import QUARANTINE_BATCH, QUARANTINE_DIR, REASON, Reason

logger = logging.getLogger(__name__)

BATCH = "batch"
CODE = "code"
COUNT = "count"
TOTAL = "total"
SINCE_LAST_RUN = "since the last run"


def quarantine_counts(results: Path) -> pd.DataFrame:
    """(batch, code, count): quarantined records per micro-batch and reason code."""
    root = Path(results) / QUARANTINE_DIR
    rows: list[tuple[int, str, int]] = []
    folders = sorted(root.glob(f"{QUARANTINE_BATCH}=*")) if root.is_dir() else []
    for folder in folders:
        batch = folder.name.partition("=")[2]
        if not folder.is_dir() or not batch.isdigit():
            continue
        for file in sorted(folder.glob("*.parquet")):
            try:
                reasons = pq.read_table(file, columns=[REASON]).column(REASON)
            except (OSError, pa.ArrowException) as exc:
                logger.warning("quarantine file %s is unreadable, not counted: %s", file, exc)
                continue
            for item in pc.value_counts(reasons).to_pylist():
                code = Reason.code_of(item["values"] or "")
                rows.append((int(batch), code, int(item["counts"])))
    table = pd.DataFrame(rows, columns=[BATCH, CODE, COUNT])
    return table.groupby([BATCH, CODE], as_index=False)[COUNT].sum()


def counts_by_run(counts: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Quarantined records by reason code (columns, then `total`), one row per run of `runs`
    (columns `sequence`, `last_batch_id`) that says its last batch, in order, then a row for
    the batches after the last of them. Rows are labelled by run number; without any run that
    says its last batch, a single row covers everything."""
    codes = sorted(counts[CODE].unique()) if len(counts) else []
    known = runs.dropna(subset=["last_batch_id"]).sort_values("sequence")
    if not len(counts):
        return pd.DataFrame({TOTAL: [0]}, index=[TOTAL], dtype="int64")
    cuts = known["last_batch_id"].astype("int64").cummax().to_numpy()
    labels = [f"run {int(s)}" for s in known["sequence"]]
    batches = counts[BATCH].to_numpy()
    slot = cuts.searchsorted(batches, side="left")  # first run whose last batch >= the batch
    names = [*labels, SINCE_LAST_RUN if labels else TOTAL]
    frame = counts.assign(_row=[names[i] for i in slot]).pivot_table(
        index="_row", columns=CODE, values=COUNT, aggfunc="sum", fill_value=0)
    frame = frame.reindex(index=names, columns=codes, fill_value=0).astype("int64")
    frame[TOTAL] = frame.sum(axis=1)
    frame.index.name = None
    frame.columns.name = None
    return frame
