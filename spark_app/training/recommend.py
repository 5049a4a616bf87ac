"""Recommend: top-N products per user (already-bought products left out) and a popular list.

Two ways to score, same output `(user_idx, product_idx, score, rank)`:

- `blocked` (the default): users are grouped into chunks of a few thousand; each chunk meets the
  whole item-factor matrix once (a cross join with a one-row table) and a Python worker scores
  it with one matrix product per block of users, masks the user's bought products with -inf and
  keeps the top N by partial sort. The exclusion is exact (no over-fetch), nothing is exploded
  or joined per candidate, and the scoring runs in native BLAS through numpy.
  Limit: one task holds the whole item-factor matrix (products x rank x 4 bytes, 40 MB for
  a million products at rank 10).
- `spark`: ALSModel.recommendForUserSubset(N + extra), then the bought products are removed
  inside each user's array (one join on the user, no explode/anti-join/window) and the array is
  cut to N. `extra` = the largest number of products a user bought, capped; a user who bought
  more than the cap may get fewer than N.

The same scorer also ranks the popularity baseline: item "factor" = -popularity rank, user
"factor" = 1, so model and baseline go through the very same exclusion code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import FloatType

from spark_app.schema import PRODUCT_IDX, PURCHASES, RANK, RATING, SCORE, USER_IDX
from spark_app.training.prepare import require_columns, whole_table_window
from spark_app.training.split import HELD_OUT

log = logging.getLogger(__name__)

FEATURES = "features"
QUANTITY_TOTAL = "quantity"  # popular list: total quantity bought
TRAIN_PURCHASES = "train_purchases"  # product_sides(): purchases over the training pairs
TRAIN_QUANTITY_TOTAL = "train_quantity"  # product_sides(): quantity over the training pairs
RECS_SCHEMA = f"{USER_IDX} int, {PRODUCT_IDX} int, {SCORE} float, {RANK} int"
STRATEGIES = ("blocked", "spark")
DEFAULT_STRATEGY = "blocked"
# Users scored by one task against the whole item matrix. Every chunk costs the item matrix and
# the popular list converted to and from Arrow again, a task, and a partition of the scored
# table that the edges and the graph read: at 1M events (50k users) 14 chunks of <= 4096 users
# made a warm cycle 1.2-1.6 s slower than 2 chunks of <= 32768 (benchmarks/RESULTS.md). The
# scorer's memory does not grow with the chunk: it scores SCORE_CELLS_PER_BLOCK cells at a time.
USERS_PER_CHUNK = 32768
SCORE_CELLS_PER_BLOCK = 1 << 20  # users x items scores held at once by a worker (4 MB)
TOP_K_GROUPS = 256  # column groups whose maxima bound a row's k-th best score (top_k)
SPARK_STRATEGY_EXTRA_CAP = 200  # `spark` strategy: most bought products over-fetched per user

_USERS = "_users"
_ITEMS = "_items"
BOUGHT = "_bought"  # array<int>: products a user bought (bought_lists)
_CHUNK = "_chunk"


def user_vectors(model: ALSModel) -> DataFrame:
    """The model's user factors as (user_idx, features)."""
    return model.userFactors.select(F.col("id").alias(USER_IDX), FEATURES)


def item_vectors(model: ALSModel) -> DataFrame:
    """The model's item factors as (product_idx, features)."""
    return model.itemFactors.select(F.col("id").alias(PRODUCT_IDX), FEATURES)


def bought_lists(pairs: DataFrame) -> DataFrame:
    """(user_idx, _bought: array<int>) of the products each user bought."""
    return pairs.groupBy(USER_IDX).agg(F.collect_list(PRODUCT_IDX).alias(BOUGHT))


def numpy_kernels() -> SimpleNamespace:
    """The numpy pieces shared by the scoring workers (top-n here, metrics in evaluate.py).

    Defined inside a function so that they are pickled by value and run on workers that cannot
    import spark_app. Every function takes Arrow or numpy arrays and returns numpy arrays.
    """
    groups = TOP_K_GROUPS

    def item_matrix(items: Any) -> tuple[Any, Any]:
        """(ids sorted ascending, factors in that order) of a list of (product_idx, features)."""
        import numpy as np

        item_idx, item_feat = items.flatten()
        ids = item_idx.to_numpy(zero_copy_only=False).astype(np.int64)
        flat = np.asarray(item_feat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        feats = flat.reshape(len(ids), len(flat) // len(ids) if len(ids) else 0)
        order = np.argsort(ids, kind="stable")
        return ids[order], feats[order]

    def list_lengths(lists: Any) -> Any:
        """Length of every list of an Arrow list array (0 for null)."""
        import pyarrow.compute as pc

        return pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)

    def lookup(lengths: Any, values: Any, ids: Any) -> tuple[Any, Any, Any]:
        """(row, column in sorted `ids`, mask of the values found) of flattened per-row lists."""
        import numpy as np

        rows = np.repeat(np.arange(len(lengths)), lengths)
        if len(ids) == 0:
            found = np.zeros(len(values), dtype=bool)
            return rows[found], rows[found], found
        pos = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
        found = ids[pos] == values
        return rows[found], pos[found], found

    def top_k(scores: Any, k: int) -> tuple[Any, Any]:
        """Columns and scores of each row's k best finite scores, best first (ties: lower
        column first); (rows x min(k, columns)) arrays padded with -1 / -inf."""
        import numpy as np

        n_rows, n_cols = scores.shape
        kk = min(k, n_cols)
        width = n_cols // groups
        if kk < n_cols and width >= 2 and kk <= groups:
            # A lower bound of each row's k-th best score: the k-th best of the maxima of
            # `groups` disjoint column groups (k distinct columns reach it). Every score
            # >= the k-th best, ties included, is >= the bound: a candidate.
            # Only the groups whose maximum reaches the bound hold candidates (about k per
            # row), and the few tail columns beyond the last whole group.
            # Group g holds the columns g, g + groups, g + 2 * groups, ...: the maxima are then
            # an element-wise maximum of `width` contiguous slices (vectorised), not `groups`
            # reductions of `width` neighbours each (a 4096-user chunk: 177 -> 112 ms, measured).
            grouped = scores[:, : width * groups].reshape(n_rows, width, groups)
            maxima = grouped.max(axis=1)
            bound = np.partition(maxima, groups - kk, axis=1)[:, groups - kk]
            group_rows, group_ids = np.nonzero(maxima >= bound[:, None])
            members = grouped[group_rows, :, group_ids]  # (hit groups, width)
            hit, offset = np.nonzero(members >= bound[group_rows, None])
            tail_rows, tail_cols = np.nonzero(scores[:, width * groups :] >= bound[:, None])
            rows = np.concatenate((group_rows[hit], tail_rows))
            cols = np.concatenate((offset * groups + group_ids[hit], tail_cols + width * groups))
        elif kk < n_cols:  # every score >= the row's k-th best is a candidate (ties included)
            kth = np.partition(scores, n_cols - kk, axis=1)[:, n_cols - kk]
            rows, cols = np.nonzero(scores >= kth[:, None])
        else:
            rows, cols = np.nonzero(np.ones(scores.shape, dtype=bool))
        vals = scores[rows, cols]
        order = np.lexsort((cols, -vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        pos = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n_rows))[rows]
        keep = (pos < kk) & np.isfinite(vals)
        top_cols = np.full((n_rows, kk), -1, dtype=np.int64)
        top_vals = np.full((n_rows, kk), -np.inf, dtype=np.float32)
        top_cols[rows[keep], pos[keep]] = cols[keep]
        top_vals[rows[keep], pos[keep]] = vals[keep]
        return top_cols, top_vals

    def ranking_sums(top_ids: Any, held_rows: Any, held_ids: Any, k: int) -> Any:
        """Sums over rows of precision, recall, NDCG and MAP at k (Spark's RankingMetrics).

        top_ids: (rows x <= k) recommended ids best first, -1 = none; held_rows/held_ids: the
        held-out ids of each row, flattened (duplicates count once). A row without held-out ids
        scores 0, as in Spark.
        """
        import numpy as np

        n_rows, width = top_ids.shape
        span = int(max(top_ids.max(initial=0), held_ids.max(initial=0))) + 2
        held_keys = np.unique(held_rows.astype(np.int64) * span + held_ids)
        n_held = np.bincount(held_keys // span, minlength=n_rows)[:n_rows]
        rec_keys = np.arange(n_rows, dtype=np.int64)[:, None] * span + top_ids
        hit = np.isin(rec_keys, held_keys) & (top_ids >= 0)
        hits = hit.sum(axis=1)
        has_held = n_held > 0
        denominator = np.maximum(n_held, 1)
        cut = np.minimum(n_held, k)
        precision = hits / k
        recall = np.where(has_held, hits / denominator, 0.0)
        position = np.arange(1, width + 1)
        precision_at_hits = (hit * np.cumsum(hit, axis=1) / position).sum(axis=1)
        average_precision = np.where(has_held, precision_at_hits / np.maximum(cut, 1), 0.0)
        gains = 1.0 / np.log(np.arange(k) + 2.0)
        dcg = (hit * gains[:width]).sum(axis=1)
        ideal = np.concatenate(([0.0], np.cumsum(gains)))[cut]
        ndcg = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)
        return np.array(
            [precision.sum(), recall.sum(), ndcg.sum(), average_precision.sum()], dtype=np.float64
        )

    return SimpleNamespace(
        item_matrix=item_matrix,
        list_lengths=list_lengths,
        lookup=lookup,
        top_k=top_k,
        ranking_sums=ranking_sums,
    )


def _score_chunks(n: int, cells_per_block: int) -> Callable[[Iterator], Iterator]:
    """A mapInArrow function: chunk rows (users x item matrix) -> top-n rows per user."""
    names = [USER_IDX, PRODUCT_IDX, SCORE, RANK]
    users_field, items_field = _USERS, _ITEMS
    kernels = numpy_kernels()

    def score_one_chunk(users: Any, items: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        ids, feats = kernels.item_matrix(items)
        n_items, n_users = len(ids), len(users)
        if n_items == 0 or n_users == 0:
            return None
        user_idx, user_feat, bought = users.flatten()
        uids = user_idx.to_numpy(zero_copy_only=False).astype(np.int32)
        ufeat = np.asarray(user_feat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        ufeat = ufeat.reshape(n_users, feats.shape[1])
        bought_ids = bought.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        bought_rows, bought_cols, _ = kernels.lookup(kernels.list_lengths(bought), bought_ids, ids)

        block = max(1, cells_per_block // n_items)
        out_u, out_p, out_s, out_r = [], [], [], []
        for start in range(0, n_users, block):
            stop = min(n_users, start + block)
            scores = ufeat[start:stop] @ feats.T
            lo, hi = np.searchsorted(bought_rows, [start, stop])
            scores[bought_rows[lo:hi] - start, bought_cols[lo:hi]] = -np.inf
            top_cols, top_scores = kernels.top_k(scores, n)
            keep = top_cols >= 0
            ranks = np.broadcast_to(np.arange(1, top_cols.shape[1] + 1, dtype=np.int32), keep.shape)
            rows = np.broadcast_to(np.arange(start, stop)[:, None], keep.shape)
            out_u.append(uids[rows[keep]])
            out_p.append(ids[top_cols[keep]].astype(np.int32))
            out_s.append(top_scores[keep])
            out_r.append(ranks[keep])
        return pa.RecordBatch.from_arrays(
            [
                pa.array(np.concatenate(out_u), pa.int32()),
                pa.array(np.concatenate(out_p), pa.int32()),
                pa.array(np.concatenate(out_s), pa.float32()),
                pa.array(np.concatenate(out_r), pa.int32()),
            ],
            names=names,
        )

    def score(batches: Iterator) -> Iterator:
        for batch in batches:
            users_col = batch.column(users_field)
            items_col = batch.column(items_field)
            for row in range(batch.num_rows):
                result = score_one_chunk(users_col[row].values, items_col[row].values)
                if result is not None:
                    yield result

    return score


def top_n_blocked(
    users: DataFrame,
    items: DataFrame,
    n: int,
    *,
    exclude: DataFrame | None = None,
    num_chunks: int = 1,
) -> DataFrame:
    """Top-n items per user by dot product, leaving out each user's `exclude` pairs.

    users: (user_idx, features array<float>); items: (product_idx, features array<float>);
    exclude: (user_idx, product_idx) pairs, or their bought_lists(), or None.
    Returns (user_idx, product_idx, score, rank)
    with rank 1..n (fewer only when a user has fewer than n items left).
    """
    require_columns(users, (USER_IDX, FEATURES), "top_n_blocked users")
    require_columns(items, (PRODUCT_IDX, FEATURES), "top_n_blocked items")
    if exclude is not None:
        grouped = exclude if BOUGHT in exclude.columns else bought_lists(exclude)
        with_bought = users.join(grouped, USER_IDX, "left")
    else:
        with_bought = users.withColumn(BOUGHT, F.lit(None).cast("array<int>"))
    chunks = chunk_users(with_bought, (USER_IDX, FEATURES, BOUGHT), num_chunks, _USERS)
    return (
        chunks.crossJoin(item_matrix_row(items, _ITEMS))
        .select(_USERS, _ITEMS)
        .mapInArrow(_score_chunks(n, SCORE_CELLS_PER_BLOCK), RECS_SCHEMA)
    )


def chunk_users(
    users: DataFrame, columns: tuple[str, ...], num_chunks: int, alias: str
) -> DataFrame:
    """One row per chunk of users (user_idx modulo num_chunks), `alias` = list of structs of
    `columns`; chunk c in partition c, so each chunk is one task of the scorer (the shuffle
    would otherwise be coalesced into fewer, uneven tasks)."""
    n = max(1, num_chunks)
    return (
        users.groupBy(F.pmod(F.col(USER_IDX), F.lit(n)).alias(_CHUNK))
        .agg(F.collect_list(F.struct(*columns)).alias(alias))
        .repartitionById(n, _CHUNK)
    )


def item_matrix_row(items: DataFrame, alias: str) -> DataFrame:
    """The whole item matrix as one row: `alias` = list of (product_idx, features)."""
    return items.agg(F.collect_list(F.struct(PRODUCT_IDX, FEATURES)).alias(alias))


def top_n_spark(
    model: ALSModel,
    users: DataFrame,
    n: int,
    *,
    exclude: DataFrame | None = None,
    extra: int = 0,
) -> DataFrame:
    """Top-n per user via recommendForUserSubset(n + extra), bought products removed in-array."""
    recs = model.recommendForUserSubset(users.select(USER_IDX), n + extra)
    items = F.col("recommendations")
    if exclude is not None:
        grouped = exclude if BOUGHT in exclude.columns else bought_lists(exclude)
        recs = recs.join(grouped, USER_IDX, "left")
        items = F.filter(
            items,
            lambda r: (
                ~F.array_contains(
                    F.coalesce(F.col(BOUGHT), F.array().cast("array<int>")), r[PRODUCT_IDX]
                )
            ),
        )
    exploded = recs.select(USER_IDX, F.posexplode(F.slice(items, 1, n)).alias("_pos", "_rec"))
    return exploded.select(
        USER_IDX,
        F.col(f"_rec.{PRODUCT_IDX}").cast("int").alias(PRODUCT_IDX),
        F.col("_rec.rating").cast(FloatType()).alias(SCORE),
        (F.col("_pos") + 1).cast("int").alias(RANK),
    )


def max_bought(exclude: DataFrame) -> int:
    """Largest number of products one user bought (a small scalar)."""
    if BOUGHT in exclude.columns:
        return int(exclude.agg(F.max(F.size(BOUGHT))).first()[0] or 0)
    value = exclude.groupBy(USER_IDX).count().agg(F.max("count")).first()[0]
    return int(value or 0)


def recommend_for_users(
    model: ALSModel,
    users: DataFrame,
    n: int,
    *,
    exclude: DataFrame | None,
    strategy: str = DEFAULT_STRATEGY,
    num_chunks: int = 1,
) -> DataFrame:
    """Top-n (user_idx, product_idx, score, rank) from `model` for `users` (user_idx)."""
    if strategy == "blocked":
        targets = user_vectors(model).join(users.select(USER_IDX).distinct(), USER_IDX)
        return top_n_blocked(
            targets, item_vectors(model), n, exclude=exclude, num_chunks=num_chunks
        )
    if strategy == "spark":
        extra = 0 if exclude is None else min(max_bought(exclude), SPARK_STRATEGY_EXTRA_CAP)
        return top_n_spark(model, users, n, exclude=exclude, extra=extra)
    raise ValueError(f"unknown recommend strategy {strategy!r}; expected one of {STRATEGIES}")


def product_sides(flagged: DataFrame) -> DataFrame:
    """One row per product of flag_held_out() output: purchases and quantity over all its
    pairs, and the same over its training pairs (train_purchases = 0 when it has none).

    Both popular lists come from it: the published one (all pairs) and the baseline's
    (training side).
    """
    require_columns(flagged, (PRODUCT_IDX, PURCHASES, RATING, HELD_OUT), "product_sides")
    train = ~F.col(HELD_OUT)
    return flagged.groupBy(PRODUCT_IDX).agg(
        F.sum(PURCHASES).alias(PURCHASES),
        F.sum(RATING).cast("long").alias(QUANTITY_TOTAL),
        F.coalesce(F.sum(F.when(train, F.col(PURCHASES))), F.lit(0)).alias(TRAIN_PURCHASES),
        F.sum(F.when(train, F.col(RATING))).cast("long").alias(TRAIN_QUANTITY_TOTAL),
    )


def training_side(sides: DataFrame) -> DataFrame:
    """(product_idx, purchases, quantity) of the products with training pairs, over those
    pairs only, from product_sides() output."""
    require_columns(sides, (PRODUCT_IDX, TRAIN_PURCHASES, TRAIN_QUANTITY_TOTAL), "training_side")
    return sides.where(F.col(TRAIN_PURCHASES) > 0).select(
        PRODUCT_IDX,
        F.col(TRAIN_PURCHASES).alias(PURCHASES),
        F.col(TRAIN_QUANTITY_TOTAL).alias(QUANTITY_TOTAL),
    )


def rank_popular(totals: DataFrame, n: int | None = None) -> DataFrame:
    """(rank, product_idx, purchases, quantity) of (product_idx, purchases, quantity) totals,
    ranked by purchases, then quantity, then index; the first n if given. One window over the
    catalog, not over events."""
    require_columns(totals, (PRODUCT_IDX, PURCHASES, QUANTITY_TOTAL), "rank_popular")
    order = whole_table_window(
        F.col(PURCHASES).desc(), F.col(QUANTITY_TOTAL).desc(), F.col(PRODUCT_IDX).asc()
    )
    ranked = totals.select(
        F.row_number().over(order).alias(RANK), PRODUCT_IDX, PURCHASES, QUANTITY_TOTAL
    )
    return ranked if n is None else ranked.where(F.col(RANK) <= n)


def popular_products(pairs: DataFrame, n: int | None = None) -> DataFrame:
    """Products ranked by purchases (then quantity, then index): (rank, product_idx, purchases,
    quantity); the first n if given (see rank_popular)."""
    require_columns(pairs, (PRODUCT_IDX, PURCHASES, RATING), "popular_products")
    totals = pairs.groupBy(PRODUCT_IDX).agg(
        F.sum(PURCHASES).alias(PURCHASES), F.sum(RATING).cast("long").alias(QUANTITY_TOTAL)
    )
    return rank_popular(totals, n)


def popular_for_users(
    popular: DataFrame,
    users: DataFrame,
    n: int,
    *,
    exclude: DataFrame | None,
    num_chunks: int = 1,
) -> DataFrame:
    """The baseline: the popular list for each user, bought products left out, first n.

    Same scorer and exclusion as the model (item score = -popularity rank).
    """
    # A user's first n unbought products lie within the first n + (products they bought).
    depth = n + (max_bought(exclude) if exclude is not None else 0)
    items = popular.where(F.col(RANK) <= depth).select(
        PRODUCT_IDX, F.array(-F.col(RANK).cast(FloatType())).alias(FEATURES)
    )
    targets = (
        users.select(USER_IDX)
        .distinct()
        .select(USER_IDX, F.array(F.lit(1.0).cast(FloatType())).alias(FEATURES))
    )
    return top_n_blocked(targets, items, n, exclude=exclude, num_chunks=num_chunks)
