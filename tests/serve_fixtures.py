"""Synthetic published runs with factors (docs/run-format.md) for the API server's tests and
benchmark, written with pyarrow and json only, the way the training stage publishes: into
`results/.tmp-<run_id>/`, renamed to `results/runs/<run_id>/`, then `latest` replaced.

Also the broken runs the server must refuse: rejected, half-written, corrupt.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_contract.events import PRODUCT_ID, USER_ID
from recsys_contract.runs import (
    FACTORS_DIR,
    ITEM_FACTORS,
    LATEST,
    MANIFEST,
    METRICS,
    POPULAR_COLUMNS,
    POPULAR_CSV,
    PURCHASED_QUANTITY,
    PURCHASES_PARQUET,
    RUNS_DIR,
    SUCCESS_MARKER,
    TMP_PREFIX,
    USER_FACTORS,
    VECTOR,
    EventCounts,
    KafkaSpan,
    Manifest,
    Metrics,
    format_latest,
)

BASE_TIME = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
ALS = {"implicit_prefs": True, "rank": 4, "max_iter": 10, "reg_param": 0.1, "alpha": 1.0,
       "seed": 42, "num_blocks": 0}


@dataclass(frozen=True)
class Factors:
    """A run's content: ids, vectors, purchases (user, product, quantity), popular ids."""

    user_ids: list[str]
    users: np.ndarray
    product_ids: list[str]
    items: np.ndarray
    purchases: list[tuple[str, str, float]]
    popular: list[tuple[str, int]]  # (product_id, purchases), most popular first


def run_id_for(sequence: int) -> str:
    return f"{BASE_TIME + timedelta(minutes=sequence):%Y%m%dT%H%M%SZ}-{sequence:06d}"


def random_factors(
    users: int, products: int, *, rank: int = 4, bought_per_user: int = 3, seed: int = 0,
    user_prefix: str = "u", product_prefix: str = "p",
) -> Factors:
    """Random factors; each user bought `bought_per_user` random products."""
    rng = np.random.default_rng(seed)
    user_ids = [f"{user_prefix}{i}" for i in range(users)]
    product_ids = [f"{product_prefix}{i}" for i in range(products)]
    bought = rng.integers(0, products, size=(users, bought_per_user))
    purchases = [(user_ids[u], product_ids[p], float(rng.integers(1, 4)))
                 for u in range(users) for p in sorted(set(bought[u].tolist()))]
    counts = np.bincount(bought.ravel(), minlength=products)
    order = np.argsort(-counts, kind="stable")[:100]
    return Factors(
        user_ids, rng.standard_normal((users, rank)).astype(np.float32),
        product_ids, rng.standard_normal((products, rank)).astype(np.float32),
        purchases, [(product_ids[p], int(counts[p])) for p in order],
    )


def _vectors(matrix: np.ndarray) -> pa.Array:
    flat = pa.array(matrix.astype(np.float32).ravel(), pa.float32())
    offsets = pa.array(np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def _parquet(table: pa.Table, folder: Path, parts: int = 2) -> None:
    """A Spark-like Parquet folder: part files, then the _SUCCESS marker."""
    folder.mkdir(parents=True)
    step = max(1, -(-table.num_rows // parts))
    for i, start in enumerate(range(0, max(table.num_rows, 1), step)):
        pq.write_table(table.slice(start, step), folder / f"part-{i:05d}.snappy.parquet")
    (folder / SUCCESS_MARKER).write_bytes(b"")


def manifest_for(run_id: str, sequence: int, *, accepted: bool = True, rank: int = 4,
                 offsets: dict[str, list[int]] | None = None,
                 cut: dict[str, int] | None = None, topic: str = "sales") -> Manifest:
    return Manifest(
        run_id=run_id, sequence=sequence,
        created_at=f"{BASE_TIME + timedelta(minutes=sequence):%Y-%m-%dT%H:%M:%SZ}",
        accepted=accepted, reason="test run" if accepted else "model worse than baseline",
        events=EventCounts(100, 100, 100), window_events=0,
        kafka=KafkaSpan(topic, offsets or {}, cut or {}),
        parameters={"als": {**ALS, "rank": rank}, "recommend": {"exclude_purchased": True}},
    )


def metrics_for(accepted: bool = True) -> Metrics:
    return Metrics(k=10, split="random", test_users=1, model={"ndcg_at_k": 0.3},
                   baseline={"ndcg_at_k": 0.1}, accept_metric="ndcg_at_k", accept_margin=0.0,
                   accepted=accepted)


def write_run_files(folder: Path, factors: Factors, manifest: Manifest) -> None:
    """Every file of a run into `folder` (created)."""
    factors_dir = folder / FACTORS_DIR
    _parquet(pa.table({USER_ID: pa.array(factors.user_ids, pa.string()),
                       VECTOR: _vectors(factors.users)}), factors_dir / USER_FACTORS)
    _parquet(pa.table({PRODUCT_ID: pa.array(factors.product_ids, pa.string()),
                       VECTOR: _vectors(factors.items)}), factors_dir / ITEM_FACTORS)
    users, products, quantities = zip(*factors.purchases, strict=True) if factors.purchases \
        else ((), (), ())
    _parquet(pa.table({USER_ID: pa.array(users, pa.string()),
                       PRODUCT_ID: pa.array(products, pa.string()),
                       PURCHASED_QUANTITY: pa.array(quantities, pa.float64())}),
             factors_dir / PURCHASES_PARQUET)
    with (folder / POPULAR_CSV).open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(POPULAR_COLUMNS)
        for rank, (product, count) in enumerate(factors.popular, start=1):
            writer.writerow([rank, product, count, count])
    (folder / METRICS).write_text(metrics_for(manifest.accepted).to_json())
    (folder / MANIFEST).write_text(manifest.to_json())


def point_latest(results: Path, run_id: str) -> None:
    tmp = results / f"{TMP_PREFIX}latest"
    tmp.write_text(format_latest(run_id))
    os.replace(tmp, results / LATEST)


def publish_run(results: Path, sequence: int, factors: Factors, *, accepted: bool = True,
                manifest: Manifest | None = None) -> str:
    """Write a run as the training stage does and point `latest` at it; its id."""
    run_id = run_id_for(sequence)
    tmp = results / f"{TMP_PREFIX}{run_id}"
    write_run_files(tmp, factors, manifest or manifest_for(
        run_id, sequence, accepted=accepted, rank=factors.items.shape[1]))
    (results / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    os.rename(tmp, results / RUNS_DIR / run_id)
    point_latest(results, run_id)
    return run_id


def publish_half_written(results: Path, sequence: int, factors: Factors) -> str:
    """A run folder whose item factors lack their _SUCCESS marker and parts (a writer that
    died mid-way on a filesystem without atomic renames), with `latest` pointing at it."""
    run_id = publish_run(results, sequence, factors)
    items = results / RUNS_DIR / run_id / FACTORS_DIR / ITEM_FACTORS
    shutil.rmtree(items)
    items.mkdir()
    (items / "part-00000.snappy.parquet").write_bytes(b"PAR1 cut short")
    return run_id


def publish_corrupt(results: Path, sequence: int, factors: Factors) -> str:
    """A run whose user factors' Parquet is garbage though marked complete."""
    run_id = publish_run(results, sequence, factors)
    users = results / RUNS_DIR / run_id / FACTORS_DIR / USER_FACTORS
    for part in users.glob("part-*"):
        part.write_bytes(b"not parquet at all")
    return run_id


def write_large_run(folder: Path, run_id: str, sequence: int, *, users: int, products: int,
                    rank: int = 10, bought_per_user: int = 20, seed: int = 0) -> None:
    """A run of `users` x `products` with random factors into `folder` (vectorised: a million
    purchases in seconds). Users `u<i>`, products `p<i>`, each user bought
    `bought_per_user` products (repeats merged)."""
    rng = np.random.default_rng(seed)
    user_ids = pa.array([f"u{i}" for i in range(users)], pa.string())
    product_ids = pa.array([f"p{i}" for i in range(products)], pa.string())
    bought = np.unique(np.repeat(np.arange(users, dtype=np.int64), bought_per_user) * products
                       + rng.integers(0, products, users * bought_per_user))
    buyer, product = bought // products, bought % products
    factors_dir = folder / FACTORS_DIR
    _parquet(pa.table({USER_ID: user_ids, VECTOR: _vectors(
        rng.standard_normal((users, rank)).astype(np.float32))}), factors_dir / USER_FACTORS, 4)
    _parquet(pa.table({PRODUCT_ID: product_ids, VECTOR: _vectors(
        rng.standard_normal((products, rank)).astype(np.float32))}), factors_dir / ITEM_FACTORS)
    units = pa.array(rng.integers(1, 4, len(bought)), pa.float64())
    _parquet(pa.table({USER_ID: user_ids.take(pa.array(buyer)),
                       PRODUCT_ID: product_ids.take(pa.array(product)),
                       PURCHASED_QUANTITY: units}), factors_dir / PURCHASES_PARQUET, 4)
    counts = np.bincount(product, minlength=products)
    with (folder / POPULAR_CSV).open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(POPULAR_COLUMNS)
        for rank_, p in enumerate(np.argsort(-counts, kind="stable")[:100], start=1):
            writer.writerow([rank_, f"p{p}", counts[p], counts[p]])
    manifest = manifest_for(run_id, sequence, rank=rank)
    (folder / METRICS).write_text(metrics_for().to_json())
    (folder / MANIFEST).write_text(manifest.to_json())
