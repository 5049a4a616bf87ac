"""Read one published run into plain arrays, checking every file; or say why it cannot be served.

A run is served only if its manifest says it was accepted and every file the server reads is
whole: manifest.json and metrics.json parse and match the contract, each factors/ Parquet
folder carries Spark's _SUCCESS marker and reads, the vectors have the manifest's rank and are
finite, and popular.csv has its header. Anything else raises RunLoadError (the old run stays).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_contract.errors import RunFormatError
from recsys_contract.events import PRODUCT_ID, USER_ID
from recsys_contract.runs import (
    CSV_PART_GLOB,
    FACTORS_DIR,
    ITEM_FACTORS,
    LATEST,
    MANIFEST,
    METRICS,
    POPULAR_COLUMNS,
    POPULAR_CSV,
    PURCHASED_QUANTITY,
    PURCHASES,
    PURCHASES_PARQUET,
    RANK,
    RUNS_DIR,
    SUCCESS_MARKER,
    USER_FACTORS,
    VECTOR,
    Manifest,
    Metrics,
    parse_latest,
)
from serve.errors import RunLoadError, RunRejectedError
from serve.files import ResultsReader
from serve.foldin import FoldInParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purchases:
    """Every (user, product) pair of the run: user_ids[i] bought product_ids[i], quantity[i]."""

    user_ids: pa.Array  # string
    product_ids: pa.Array  # string
    quantity: np.ndarray  # float64


@dataclass(frozen=True)
class RunData:
    """A run as read from its files, checked; ServingModel builds its indexes from this."""

    run_id: str
    manifest: Manifest
    metrics: Metrics
    user_ids: pa.Array  # string, unique
    user_vectors: np.ndarray  # float32 (users x rank)
    product_ids: pa.Array  # string, unique
    item_vectors: np.ndarray  # float32 (products x rank)
    purchases: Purchases
    popular: list[tuple[str, float]]  # (product_id, purchases), most popular first
    params: FoldInParams
    exclude_purchased: bool


def latest_run_id(reader: ResultsReader) -> str | None:
    """The run `latest` names, or None if there is no pointer yet."""
    try:
        text = reader.read_bytes(LATEST).decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise RunFormatError(f"the latest pointer in {reader.location} is not text") from exc
    return parse_latest(text)


def _json_of(reader: ResultsReader, path: str) -> str:
    try:
        return reader.read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise RunLoadError(f"{path} is missing (half-written run?)") from None
    except UnicodeDecodeError:
        raise RunLoadError(f"{path} is not UTF-8 text (corrupt)") from None


def _parameters(manifest: Manifest) -> tuple[int, FoldInParams, bool]:
    als: Any = manifest.parameters.get("als")
    recommend: Any = manifest.parameters.get("recommend", {})
    try:
        rank = int(als["rank"])
        params = FoldInParams(
            implicit=bool(als["implicit_prefs"]),
            alpha=float(als["alpha"]),
            reg_param=float(als["reg_param"]),
        )
    except (TypeError, KeyError, ValueError) as exc:
        raise RunLoadError(
            f"manifest.parameters.als lacks rank, implicit_prefs, alpha or reg_param: {exc!r}"
        ) from None
    exclude = recommend.get("exclude_purchased", True) if isinstance(recommend, dict) else True
    return rank, params, bool(exclude)


def _is_vector(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) and pa.types.is_floating(kind.value_type)


_STRING: Callable[[pa.DataType], bool] = pa.types.is_string
_DOUBLE: Callable[[pa.DataType], bool] = pa.types.is_float64


def _table(
    reader: ResultsReader, folder: str, columns: dict[str, Callable[[pa.DataType], bool]]
) -> pa.Table:
    """A factors/ Parquet folder with these columns of these kinds (others ignored)."""
    if not reader.exists(f"{folder}/{SUCCESS_MARKER}"):
        raise RunLoadError(f"{folder} has no {SUCCESS_MARKER} marker (half-written run?)")
    try:
        table = reader.read_parquet(folder)
    except (OSError, pa.ArrowException) as exc:
        raise RunLoadError(f"{folder} does not read as Parquet (corrupt?): {exc}") from None
    for name, kind in columns.items():
        if name not in table.column_names:
            raise RunLoadError(f"{folder} lacks column {name!r}; it has {table.column_names}")
        column = table.column(name)
        if not kind(column.type):
            raise RunLoadError(f"{folder}.{name} has the wrong type {column.type}")
        if column.null_count:
            raise RunLoadError(f"{folder}.{name} holds {column.null_count} nulls")
    return table


def _ids(table: pa.Table, column: str, where: str) -> pa.Array:
    ids = table.column(column).combine_chunks()
    if len(pc.unique(ids)) != len(ids):
        raise RunLoadError(f"{where}.{column} repeats ids; each must appear once")
    return ids


def _vectors(table: pa.Table, rank: int, where: str) -> np.ndarray:
    lists = table.column(VECTOR).combine_chunks()
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != rank or lengths.max() != rank):
        raise RunLoadError(f"{where}.{VECTOR} has lengths other than the rank {rank}")
    flat = lists.flatten()
    if flat.null_count:
        raise RunLoadError(f"{where}.{VECTOR} holds null numbers")
    values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32)
    if not np.isfinite(values).all():
        raise RunLoadError(f"{where}.{VECTOR} holds NaN or infinite numbers")
    return values.reshape(len(lists), rank)


def _popular(reader: ResultsReader, run_dir: str) -> list[tuple[str, float]]:
    """popular.csv (a file, or a folder of part-*.csv files each with the header)."""
    path = f"{run_dir}/{POPULAR_CSV}"
    names = reader.list_names(path)
    if names:
        parts = [f"{path}/{n}" for n in names if fnmatch.fnmatch(n, CSV_PART_GLOB)]
    elif reader.exists(path):
        parts = [path]
    else:
        raise RunLoadError(f"{path} is missing (half-written run?)")
    popular: list[tuple[str, float]] = []
    for part in parts:
        rows = csv.reader(io.StringIO(reader.read_bytes(part).decode("utf-8"), newline=""))
        header = next(rows, None)
        if header is None or tuple(header[: len(POPULAR_COLUMNS)]) != POPULAR_COLUMNS:
            raise RunLoadError(f"{part} has header {header}, expected {list(POPULAR_COLUMNS)}")
        at = header.index(PRODUCT_ID), header.index(PURCHASES), header.index(RANK)
        try:
            popular += [(row[at[0]], float(row[at[1]]), int(row[at[2]])) for row in rows]
        except (IndexError, ValueError) as exc:
            raise RunLoadError(f"{part} has a malformed row (cut short?): {exc}") from None
    popular.sort(key=lambda entry: entry[2])
    return [(product, purchases) for product, purchases, _ in popular]


def load_run(reader: ResultsReader, run_id: str) -> RunData:
    """Read and check run `run_id` of the results folder, or raise RunLoadError."""
    run_dir = f"{RUNS_DIR}/{run_id}"
    try:
        manifest = Manifest.from_json(_json_of(reader, f"{run_dir}/{MANIFEST}"), "manifest")
        metrics = Metrics.from_json(_json_of(reader, f"{run_dir}/{METRICS}"), "metrics")
    except RunLoadError:
        raise
    except RunFormatError as exc:
        raise RunLoadError(f"run {run_id}: {exc}") from None
    if manifest.run_id != run_id:
        raise RunLoadError(f"run folder {run_id} holds the manifest of {manifest.run_id!r}")
    if not manifest.accepted or not metrics.accepted:
        raise RunRejectedError(f"run {run_id} was rejected: {manifest.reason}")
    rank, params, exclude = _parameters(manifest)
    factors = f"{run_dir}/{FACTORS_DIR}"
    users = _table(reader, f"{factors}/{USER_FACTORS}", {USER_ID: _STRING, VECTOR: _is_vector})
    items = _table(reader, f"{factors}/{ITEM_FACTORS}", {PRODUCT_ID: _STRING, VECTOR: _is_vector})
    bought = _table(
        reader,
        f"{factors}/{PURCHASES_PARQUET}",
        {USER_ID: _STRING, PRODUCT_ID: _STRING, PURCHASED_QUANTITY: _DOUBLE},
    )
    return RunData(
        run_id=run_id,
        manifest=manifest,
        metrics=metrics,
        user_ids=_ids(users, USER_ID, USER_FACTORS),
        user_vectors=_vectors(users, rank, USER_FACTORS),
        product_ids=_ids(items, PRODUCT_ID, ITEM_FACTORS),
        item_vectors=_vectors(items, rank, ITEM_FACTORS),
        purchases=Purchases(
            user_ids=bought.column(USER_ID).combine_chunks(),
            product_ids=bought.column(PRODUCT_ID).combine_chunks(),
            quantity=bought.column(PURCHASED_QUANTITY).to_numpy(),
        ),
        popular=_popular(reader, run_dir),
        params=params,
        exclude_purchased=exclude,
    )
