"""Replay a CSV of real purchases or ratings as sales events, in timestamp order.

The file is read in chunks (only the mapped columns), ids are kept as categorical codes, and
the rows are then sorted by time, stable, so ties keep file order. Sorting needs every row in
memory: about 25-40 bytes per row plus the distinct ids, i.e. roughly 1 GB for 25M rows
(MovieLens 25M); fine for typical public data sets up to tens of millions of rows.

Timestamps: ISO-8601 / anything pandas reads, epoch seconds or milliseconds (numeric columns
are taken as seconds below 1e11, milliseconds above), or an explicit strftime format. Rows
with an unreadable timestamp or an empty id/quantity are skipped and counted.

The job quarantines an event older than its stream.min_timestamp, or more than
stream.max_future_seconds ahead of the record's Kafka timestamp (the time it is sent).
`forecast_quarantine` counts, before anything is sent, how many replayed events that would be,
so the CLI can refuse a replay that would mostly land in the quarantine.
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from producer.errors import ReplayFormatError
from producer.records import RecordChunk
from producer.timefmt import second_prefixes
from recsys_contract.events import (
    EVENT_ID,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATING,
    TIMESTAMP,
    USER_ID,
)

log = logging.getLogger(__name__)

READ_CHUNK_ROWS = 1_000_000  # rows parsed per pandas step while loading
EMIT_CHUNK = 16_384  # events built per step while replaying
EPOCH_SECONDS_BELOW = 1e11  # a numeric timestamp below this is in seconds, else milliseconds
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ColumnMapping:
    """Which CSV column holds each event field. Give quantity or rating, or neither (= 1)."""

    user: str
    product: str
    timestamp: str
    quantity: str | None = None  # used as-is (rounded to an integer)
    rating: str | None = None  # the event's `rating`, exactly as read; quantity 1
    price: str | None = None

    def columns(self) -> list[str]:
        named = (self.user, self.product, self.timestamp, self.quantity, self.rating, self.price)
        return list(dict.fromkeys(c for c in named if c))


@dataclass
class ReplayTable:
    """The replayable rows, sorted by time, as compact columns."""

    name: str  # the file's stem; event ids are f"{name}-{row}"
    row: np.ndarray  # data-row number in the file (0 = first row after the header)
    ts_ms: np.ndarray  # epoch milliseconds, ascending
    user: pd.Categorical
    product: pd.Categorical
    quantity: np.ndarray
    price: np.ndarray | None
    rating: np.ndarray | None
    skipped: int  # rows dropped: unreadable timestamp, empty id or quantity

    def __len__(self) -> int:
        return len(self.ts_ms)

    def shift_ms(
        self,
        *,
        rebase_start_ms: int | None = None,
        rebase_end_ms: int | None = None,
        limit: int | None = None,
    ) -> int:
        """How far to move every timestamp so the first replayed event lands on
        `rebase_start_ms`, or the last one (of the first `limit`) on `rebase_end_ms`."""
        total = len(self) if limit is None else min(limit, len(self))
        if rebase_start_ms is not None and rebase_end_ms is not None:
            raise ValueError("give rebase_start_ms or rebase_end_ms, not both")
        if not total:
            return 0
        if rebase_start_ms is not None:
            return rebase_start_ms - int(self.ts_ms[0])
        if rebase_end_ms is not None:
            return rebase_end_ms - int(self.ts_ms[total - 1])
        return 0

    def events(
        self,
        *,
        epoch_ms: bool = False,
        rebase_start_ms: int | None = None,
        rebase_end_ms: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The rows as event dicts, in time order.

        `rebase_start_ms` shifts all timestamps so the first lands on that instant,
        `rebase_end_ms` so the last does (e.g. to bring 1990s ratings inside the job's
        accepted time range, all of them in the past); gaps are kept.
        """
        shift = self.shift_ms(rebase_start_ms=rebase_start_ms, rebase_end_ms=rebase_end_ms)
        users = np.asarray(self.user.categories, dtype=object)
        products = np.asarray(self.product.categories, dtype=object)
        for start in range(0, len(self), EMIT_CHUNK):
            part = slice(start, start + EMIT_CHUNK)
            ts = self.ts_ms[part] + shift
            if epoch_ms:
                stamps: list[Any] = ts.tolist()
            else:
                prefixes = {s: p.decode() for s, p in second_prefixes(ts // 1000).items()}
                stamps = [f"{prefixes[t // 1000]}.{t % 1000:03d}Z" for t in ts.tolist()]
            prices = self.price[part].tolist() if self.price is not None else None
            ratings = self.rating[part].tolist() if self.rating is not None else None
            rows = zip(
                self.row[part].tolist(),
                users[self.user.codes[part]].tolist(),
                products[self.product.codes[part]].tolist(),
                self.quantity[part].tolist(),
                stamps,
                strict=True,
            )
            for i, (row, user, product, quantity, stamp) in enumerate(rows):
                event: dict[str, Any] = {
                    EVENT_ID: f"{self.name}-{row}",
                    USER_ID: user,
                    PRODUCT_ID: product,
                    QUANTITY: quantity,
                    TIMESTAMP: stamp,
                }
                if prices is not None and not np.isnan(prices[i]):
                    event[PRICE] = prices[i]
                if ratings is not None:
                    event[RATING] = ratings[i]
                yield event

    def record_chunks(
        self,
        *,
        epoch_ms: bool = False,
        rebase_start_ms: int | None = None,
        rebase_end_ms: int | None = None,
        speed: float = 0.0,
        limit: int | None = None,
    ) -> Iterator[RecordChunk]:
        """Kafka records (key = user id) in chunks; with speed > 0 each carries its due time:
        seconds after the first event divided by speed (3600 = one hour of data per second).
        `rebase_end_ms` puts the last of the first `limit` events at that instant."""
        total = len(self) if limit is None else min(limit, len(self))
        if total == 0:
            return
        keys: list[bytes | None] = []
        values: list[bytes] = []
        first = int(self.ts_ms[0])
        if rebase_end_ms is not None:  # the last *replayed* event, not the file's last
            rebase_start_ms = rebase_end_ms - int(self.ts_ms[total - 1]) + first
        for n, event in enumerate(self.events(epoch_ms=epoch_ms, rebase_start_ms=rebase_start_ms)):
            if n >= total:
                break
            keys.append(event[USER_ID].encode())
            values.append(_ENCODER.encode(event).encode())
            if len(values) == EMIT_CHUNK or n == total - 1:
                due = None
                if speed > 0:
                    base = n + 1 - len(values)
                    ts = self.ts_ms[base : n + 1]
                    due = ((ts - first) / 1000.0 / speed).tolist()
                yield RecordChunk(keys, values, due_s=due)
                keys, values = [], []


@dataclass(frozen=True)
class QuarantineForecast:
    """How many replayed events the job would quarantine for their timestamps."""

    rows: int
    too_old: int  # before stream.min_timestamp
    in_future: int  # more than stream.max_future_seconds ahead of their send time
    first_ms: int  # the first and last replayed timestamps, as sent
    last_ms: int

    @property
    def quarantined(self) -> int:
        return self.too_old + self.in_future


def forecast_quarantine(
    table: ReplayTable,
    *,
    shift_ms: int,
    speed: float,
    start_ms: int,
    min_timestamp_ms: int,
    max_future_ms: int,
    limit: int | None = None,
) -> QuarantineForecast:
    """Count the replayed events the job's time checks would quarantine, if sending starts at
    `start_ms` (each is sent at its due time with `speed` > 0, at once with 0; sending later
    only makes "in the future" rarer)."""
    total = len(table) if limit is None else min(limit, len(table))
    original = table.ts_ms[:total]
    if not total:
        return QuarantineForecast(0, 0, 0, 0, 0)
    stamps = original + shift_ms
    sent = np.full(total, float(start_ms))
    if speed > 0:
        sent += (original - original[0]) / speed
    too_old = stamps < min_timestamp_ms
    in_future = ~too_old & (stamps > sent + max_future_ms)
    return QuarantineForecast(total, int(too_old.sum()), int(in_future.sum()),
                              int(stamps[0]), int(stamps[-1]))


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        try:
            return next(csv.reader(handle))
        except StopIteration:
            raise ReplayFormatError(f"{path}: the file is empty (expected a header row)") from None


def _parse_times(values: pd.Series, timestamp_format: str | None) -> np.ndarray:
    """Epoch ms of each value as float (NaN where unreadable)."""
    fmt = (timestamp_format or "auto").strip()
    if fmt in ("epoch_s", "epoch_ms") or (fmt == "auto" and pd.api.types.is_numeric_dtype(values)):
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        if fmt == "auto":
            finite = numbers[np.isfinite(numbers)]
            seconds = finite.size and np.median(np.abs(finite)) < EPOCH_SECONDS_BELOW
            fmt = "epoch_s" if seconds else "epoch_ms"
        return np.floor(numbers * 1000.0) if fmt == "epoch_s" else np.floor(numbers)
    if fmt == "auto":
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        if parsed.isna().all() and values.notna().any():  # not ISO: let pandas infer
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                parsed = pd.to_datetime(values, utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format=fmt)
    millis = parsed.to_numpy(dtype="datetime64[ms]").astype(np.int64).astype(np.float64)
    millis[parsed.isna().to_numpy()] = np.nan
    return millis


def read_replay(
    path: str | Path,
    mapping: ColumnMapping,
    *,
    timestamp_format: str | None = None,
    chunk_rows: int = READ_CHUNK_ROWS,
) -> ReplayTable:
    """Load the mapped columns of a CSV and sort the rows by timestamp (stable).

    `timestamp_format`: None/"auto", "epoch_s", "epoch_ms" or a strftime pattern such as
    "%d/%m/%Y %H:%M". Raises ReplayFormatError when a mapped column is missing.
    """
    path = Path(path)
    if mapping.quantity and mapping.rating:
        raise ReplayFormatError("give a quantity column or a rating column, not both")
    header = _header(path)
    missing = [c for c in mapping.columns() if c not in header]
    if missing:
        raise ReplayFormatError(f"{path}: no column(s) {missing}; the header has {header}")
    amount_col = mapping.quantity or mapping.rating
    parts: dict[str, list[Any]] = {
        k: [] for k in ("row", "ts", "user", "product", "qty", "price", "rating")}
    skipped, offset = 0, 0
    reader = pd.read_csv(
        path,
        usecols=mapping.columns(),
        dtype={mapping.user: str, mapping.product: str},
        chunksize=chunk_rows,
        skipinitialspace=True,
        encoding="utf-8-sig",
    )
    for frame in reader:
        ts = _parse_times(frame[mapping.timestamp], timestamp_format)
        users = frame[mapping.user].str.strip()
        products = frame[mapping.product].str.strip()
        if amount_col:
            amount = pd.to_numeric(frame[amount_col], errors="coerce").to_numpy(dtype=np.float64)
        else:
            amount = np.ones(len(frame))
        ok = (
            np.isfinite(ts)
            & np.isfinite(amount)
            & users.fillna("").ne("").to_numpy()
            & products.fillna("").ne("").to_numpy()
        )
        skipped += int((~ok).sum())
        parts["row"].append(np.arange(offset, offset + len(frame), dtype=np.int64)[ok])
        parts["ts"].append(ts[ok].astype(np.int64))
        parts["user"].append(pd.Categorical(users[ok]))
        parts["product"].append(pd.Categorical(products[ok]))
        if mapping.rating:  # the rating as it is; each row one purchase
            parts["rating"].append(amount[ok])
            qty = np.ones(int(ok.sum()))
        else:
            qty = np.rint(amount[ok])
        parts["qty"].append(qty.astype(np.int64))
        if mapping.price:
            parts["price"].append(
                pd.to_numeric(frame[mapping.price], errors="coerce").to_numpy(np.float64)[ok]
            )
        offset += len(frame)
    if skipped:
        log.warning("%s: skipped %d of %d rows (unreadable timestamp, empty id or amount)",
                    path, skipped, offset)
    if not parts["ts"]:
        empty = pd.Categorical([])
        return ReplayTable(path.stem, np.array([], np.int64), np.array([], np.int64), empty,
                           empty, np.array([], np.int64), None, None, skipped)
    ts_all = np.concatenate(parts["ts"])
    order = np.argsort(ts_all, kind="stable")
    users_all = union_categoricals(parts["user"])
    products_all = union_categoricals(parts["product"])
    return ReplayTable(
        name=path.stem,
        row=np.concatenate(parts["row"])[order],
        ts_ms=ts_all[order],
        user=pd.Categorical.from_codes(users_all.codes[order], users_all.categories),
        product=pd.Categorical.from_codes(products_all.codes[order], products_all.categories),
        quantity=np.concatenate(parts["qty"])[order],
        price=np.concatenate(parts["price"])[order] if mapping.price else None,
        rating=np.concatenate(parts["rating"])[order] if mapping.rating else None,
        skipped=skipped,
    )
