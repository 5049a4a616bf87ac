"""Evaluate: RMSE and ranking metrics on held-out pairs, model beside the popularity baseline.

Ranking metrics follow Spark's RankingMetrics (what RankingEvaluator computes), per user:
- precision@k = hits in the first k / k (k even when fewer were recommended),
- recall@k = hits in the first k / number of held-out products of the user,
- NDCG@k with binary relevance,
- MAP@k = (sum of precision@i at each hit position i <= k) / min(|held out|, k)
  (Spark's `meanAveragePrecisionAtK`; some libraries divide by |held out| or by the hits),
each averaged over the evaluated users. Coverage = distinct products recommended to the
evaluated users / catalog size.

They are computed with numpy in the Python workers, per chunk of users, and summed by one Spark
aggregation. With the default `blocked` strategy that happens in the very worker that scores the
users (model, baseline and the model's RMSE), so an evaluation is one Spark job.
tests/unit/test_training_evaluate.py checks the figures against hand-computed values and against
Spark's RankingEvaluator and RegressionEvaluator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from pyspark.errors import IllegalArgumentException
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_app.schema import PREDICTION, PRODUCT_IDX, RANK, RATING, SCORE, USER_IDX
from spark_app.training.prepare import require_columns
from spark_app.training.recommend import (
    BOUGHT,
    DEFAULT_STRATEGY,
    FEATURES,
    SCORE_CELLS_PER_BLOCK,
    bought_lists,
    chunk_users,
    item_matrix_row,
    item_vectors,
    numpy_kernels,
    popular_for_users,
    popular_products,
    product_sides,
    rank_popular,
    recommend_for_users,
    training_side,
    user_vectors,
)
from spark_app.training.split import HELD_OUT, HELD_PRODUCTS, TRAIN_PRODUCTS, side_lists

log = logging.getLogger(__name__)

PREDICTED = "predicted"  # array<int>: recommended products, best first
ACTUAL = "actual"  # array<int>: held-out products of the user
LABEL = "label"
RANKING_METRIC_NAMES = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k")
METRIC_NAMES = ("rmse", *RANKING_METRIC_NAMES, "coverage")
MODEL = "model"
BASELINE = "baseline"
RECOMMENDER = "recommender"
USERS = "users"
SQUARED_ERROR = "squared_error"
SCORED = "scored"
PRODUCTS = "products"
# What the metric workers emit: per recommender and chunk (or Arrow batch) of users, partial
# sums; the one-pass scorer also emits recommendation rows in the same schema (SCORED_SCHEMA).
RECS_COLUMNS = (USER_IDX, PRODUCT_IDX, SCORE, RANK)
PARTIAL_COLUMNS = (
    RECOMMENDER,
    USERS,
    *RANKING_METRIC_NAMES,
    SQUARED_ERROR,
    SCORED,
    PRODUCTS,
)
SCORED_SCHEMA = (
    f"{USER_IDX} int, {PRODUCT_IDX} int, {SCORE} float, {RANK} int, "
    f"{RECOMMENDER} string, {USERS} long, "
    + "".join(f"{name} double, " for name in RANKING_METRIC_NAMES)
    + f"{SQUARED_ERROR} double, {SCORED} long, {PRODUCTS} array<int>"
)

_HELD = "_held"  # a user's held-out pairs: array<struct<product_idx, label>>
_POPULAR = "_popular"  # products of the training split, most popular first
_ITEMS = "_items"
_USERS = "_users"


def rmse(
    predictions: DataFrame, label_col: str = LABEL, prediction_col: str = PREDICTION
) -> float | None:
    """Root mean squared error of prediction vs label; None when there is nothing to score."""
    scored = predictions.where(F.col(prediction_col).isNotNull() & ~F.isnan(prediction_col))
    evaluator = RegressionEvaluator(
        metricName="rmse", labelCol=label_col, predictionCol=prediction_col
    )
    try:
        value = float(evaluator.evaluate(scored))
    except IllegalArgumentException:  # Spark's summarizer refuses an empty input
        return None
    return None if math.isnan(value) else value


def held_out_lists(test: DataFrame, users: DataFrame) -> DataFrame:
    """(user_idx, actual array<int>) of the held-out products of each user in `users`."""
    require_columns(test, (USER_IDX, PRODUCT_IDX), "held_out_lists")
    return (
        test.join(users.select(USER_IDX).distinct(), USER_IDX)
        .groupBy(USER_IDX)
        .agg(F.collect_set(F.col(PRODUCT_IDX).cast("int")).alias(ACTUAL))
    )


def ranked_lists(recs: DataFrame) -> DataFrame:
    """(user_idx, predicted array<int>) from (user_idx, product_idx, rank) rows, best first."""
    require_columns(recs, (USER_IDX, PRODUCT_IDX, RANK), "ranked_lists")
    item = F.col(PRODUCT_IDX).cast("int").alias(PRODUCT_IDX)
    ordered = F.array_sort(F.collect_list(F.struct(RANK, item)))
    return recs.groupBy(USER_IDX).agg(
        F.transform(ordered, lambda x: x[PRODUCT_IDX]).alias(PREDICTED)
    )


def _metric_kernels() -> SimpleNamespace:
    """numpy_kernels() plus the metric workers' output rows; pickled by value like those."""
    kernels = numpy_kernels()
    names = [*RECS_COLUMNS, *PARTIAL_COLUMNS]

    def partial_row(
        name: str,
        users: int,
        sums: Any,
        products: list[Any],
        squared_error: float = 0.0,
        scored: int = 0,
    ) -> Any:
        """One row of partial sums of `name` (SCORED_SCHEMA, recommendation columns null)."""
        import numpy as np
        import pyarrow as pa

        distinct = np.unique(np.concatenate(products)) if products else np.array([])
        return pa.RecordBatch.from_arrays(
            [
                pa.nulls(1, pa.int32()),
                pa.nulls(1, pa.int32()),
                pa.nulls(1, pa.float32()),
                pa.nulls(1, pa.int32()),
                pa.array([name], pa.string()),
                pa.array([users], pa.int64()),
                *[pa.array([float(s)], pa.float64()) for s in sums],
                pa.array([float(squared_error)], pa.float64()),
                pa.array([int(scored)], pa.int64()),
                pa.array([distinct.astype(np.int32)], pa.list_(pa.int32())),
            ],
            names=names,
        )

    def recs_batch(users: Any, products: Any, scores: Any, ranks: Any) -> Any:
        """Recommendation rows (SCORED_SCHEMA, partial-sum columns null)."""
        import pyarrow as pa

        n = len(users)
        return pa.RecordBatch.from_arrays(
            [
                pa.array(users, pa.int32()),
                pa.array(products, pa.int32()),
                pa.array(scores, pa.float32()),
                pa.array(ranks, pa.int32()),
                pa.nulls(n, pa.string()),
                pa.nulls(n, pa.int64()),
                *[pa.nulls(n, pa.float64()) for _ in RANKING_METRIC_NAMES],
                pa.nulls(n, pa.float64()),
                pa.nulls(n, pa.int64()),
                pa.nulls(n, pa.list_(pa.int32())),
            ],
            names=names,
        )

    kernels.partial_row = partial_row
    kernels.recs_batch = recs_batch
    return kernels


def _score_lists(k: int) -> Callable[[Iterator], Iterator]:
    """A mapInArrow function: (recommender, predicted, actual) rows -> partial-sum rows."""
    kernels = _metric_kernels()

    def score(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa

        for batch in batches:
            names = batch.column(RECOMMENDER).to_numpy(zero_copy_only=False)
            for name in np.unique(names):
                part = batch.filter(pa.array(names == name))
                predicted, held = part.column(PREDICTED), part.column(ACTUAL)
                n_users = part.num_rows
                rows = np.repeat(np.arange(n_users), kernels.list_lengths(predicted))
                ids = predicted.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
                pos = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n_users))[rows]
                keep = pos < k
                top_ids = np.full((n_users, k), -1, dtype=np.int64)
                top_ids[rows[keep], pos[keep]] = ids[keep]
                held_rows = np.repeat(np.arange(n_users), kernels.list_lengths(held))
                held_ids = held.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
                sums = kernels.ranking_sums(top_ids, held_rows, held_ids, k)
                yield kernels.partial_row(str(name), n_users, sums, [ids[keep]])

    return score


def _score_users_chunks(
    k: int, top_n: int, exclude_held: bool, cells_per_block: int
) -> Callable[[Iterator], Iterator]:
    """A mapInArrow function: chunk rows (users with factors, train and held-out products; the
    item matrix; the popular list) -> SCORED_SCHEMA rows.

    Each user is scored once against the whole catalog: the prediction of every held-out pair
    the model knows (RMSE); the ranking with the train products masked, as top_n_blocked does,
    whose first k products are the evaluated list; and, if top_n > 0, the top_n of the same
    ranking without the held-out products either (`exclude_held`), i.e. without everything the
    user bought: the recommendations. The baseline is ranked the same way with item score
    = -popularity rank. Metrics count only users with held-out pairs.
    """
    kernels = _metric_kernels()

    def rank_users(
        ufeat: Any,
        ids: Any,
        feats: Any,
        bought: tuple[Any, Any],
        held: tuple[Any, Any, Any],
        n: int,
    ) -> tuple[Any, list[Any], float, int, list[Any]]:
        """Ranking sums, evaluated lists' ids, squared error, number of scored held-out pairs,
        and the top-n recommendations as (row, product, score, rank) arrays."""
        import numpy as np

        bought_lengths, bought_ids = bought
        held_lengths, held_ids, labels = held
        n_users = len(ufeat)
        bought_rows, bought_cols, _ = kernels.lookup(bought_lengths, bought_ids, ids)
        known_rows, known_cols, known = kernels.lookup(held_lengths, held_ids, ids)
        known_labels = labels[known]
        held_rows = np.repeat(np.arange(n_users), held_lengths)
        span = int(max(ids.max(initial=0), held_ids.max(initial=0))) + 2
        sums = np.zeros(len(RANKING_METRIC_NAMES))
        products: list[Any] = []
        recs: list[Any] = []
        squared_error, scored = 0.0, 0
        block = max(1, cells_per_block // max(1, len(ids)))
        for start in range(0, n_users, block):
            stop = min(n_users, start + block)
            scores = ufeat[start:stop] @ feats.T
            lo, hi = np.searchsorted(known_rows, [start, stop])
            predicted = scores[known_rows[lo:hi] - start, known_cols[lo:hi]].astype(np.float64)
            squared_error += float(((predicted - known_labels[lo:hi]) ** 2).sum())
            scored += hi - lo
            lo, hi = np.searchsorted(bought_rows, [start, stop])
            scores[bought_rows[lo:hi] - start, bought_cols[lo:hi]] = -np.inf
            # The first n products that were not held out lie within the first n + held ones.
            held_here = held_lengths[start:stop]
            extra = int(held_here.max(initial=0)) if n and exclude_held else 0
            top_cols, top_scores = kernels.top_k(scores, max(k, n + extra))
            top_ids = np.where(top_cols >= 0, ids[np.maximum(top_cols, 0)], -1)
            lo, hi = np.searchsorted(held_rows, [start, stop])
            block_held_rows, block_held_ids = held_rows[lo:hi] - start, held_ids[lo:hi]
            listed = top_ids[:, :k]
            sums += kernels.ranking_sums(listed, block_held_rows, block_held_ids, k)
            evaluated = listed[held_here > 0]
            products.append(evaluated[evaluated >= 0])
            if n:
                keep = top_ids >= 0
                if exclude_held:
                    rows = np.arange(stop - start, dtype=np.int64)[:, None]
                    held_keys = block_held_rows.astype(np.int64) * span + block_held_ids
                    keep &= ~np.isin(rows * span + top_ids, held_keys)
                rank = np.cumsum(keep, axis=1)
                keep &= rank <= n
                row_of = np.broadcast_to(np.arange(start, stop)[:, None], keep.shape)
                recs.append((row_of[keep], top_ids[keep], top_scores[keep], rank[keep]))
        return sums, products, squared_error, scored, recs

    def score_one_chunk(users: Any, items: Any, popular: Any) -> Iterator:
        import numpy as np

        n_users = len(users)
        if n_users == 0:
            return
        user_idx, user_feat, bought, held = users.flatten()
        uids = user_idx.to_numpy(zero_copy_only=False).astype(np.int32)
        bought_lengths = kernels.list_lengths(bought)
        bought_ids = bought.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        held_lengths = kernels.list_lengths(held)
        held_pairs = held.flatten()
        held_ids = held_pairs.field(0).to_numpy(zero_copy_only=False).astype(np.int64)
        labels = held_pairs.field(1).to_numpy(zero_copy_only=False).astype(np.float64)
        bought_lists_ = (bought_lengths, bought_ids)
        held_lists = (held_lengths, held_ids, labels)
        evaluated = int((held_lengths > 0).sum())

        ids, feats = kernels.item_matrix(items)
        flat = np.asarray(user_feat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        ufeat = flat.reshape(n_users, feats.shape[1])
        sums, products, squared_error, scored, recs = rank_users(
            ufeat, ids, feats, bought_lists_, held_lists, top_n
        )
        for rows, product, score_, rank in recs:
            yield kernels.recs_batch(uids[rows], product, score_, rank)
        yield kernels.partial_row(MODEL, evaluated, sums, products, squared_error, scored)

        # A user's first k unbought popular products lie within the first k + (bought) ones.
        ranked = popular.to_numpy(zero_copy_only=False).astype(np.int64)
        depth = min(len(ranked), k + int(bought_lengths.max(initial=0)))
        order = np.argsort(ranked[:depth], kind="stable")
        popularity = -(order + 1).astype(np.float32)[:, None]  # item score = -rank
        sums, products, _, _, _ = rank_users(
            np.ones((n_users, 1), dtype=np.float32),
            ranked[:depth][order],
            popularity,
            bought_lists_,
            held_lists,
            0,
        )
        yield kernels.partial_row(BASELINE, evaluated, sums, products)

    def score(batches: Iterator) -> Iterator:
        for batch in batches:
            users_col, items_col = batch.column(_USERS), batch.column(_ITEMS)
            popular_col = batch.column(_POPULAR)
            for row in range(batch.num_rows):
                yield from score_one_chunk(
                    users_col[row].values, items_col[row].values, popular_col[row].values
                )

    return score


def summarize(
    partials: DataFrame, catalog_size: int, names: tuple[str, ...]
) -> tuple[int, dict[str, dict[str, float | None]]]:
    """(evaluated users, metrics per recommender) from the partial-sum rows of SCORED_SCHEMA
    rows, in one Spark job.

    A recommender with no rows (no evaluated user) gets None everywhere; RMSE is None where no
    held-out pair was scored.
    """
    rows = (
        partials.where(F.col(RECOMMENDER).isNotNull())
        .groupBy(RECOMMENDER)
        .agg(
            F.sum(USERS).alias(USERS),
            *[F.sum(name).alias(name) for name in RANKING_METRIC_NAMES],
            F.sum(SQUARED_ERROR).alias(SQUARED_ERROR),
            F.sum(SCORED).alias(SCORED),
            F.size(F.array_distinct(F.flatten(F.collect_list(PRODUCTS)))).alias(PRODUCTS),
        )
        .collect()
    )
    found = {row[RECOMMENDER]: row for row in rows}
    results: dict[str, dict[str, float | None]] = {}
    users = 0
    for name in names:
        row = found.get(name)
        if row is None or not row[USERS]:
            results[name] = dict.fromkeys(METRIC_NAMES)
            continue
        users = max(users, int(row[USERS]))
        scored = int(row[SCORED] or 0)
        results[name] = {
            "rmse": math.sqrt(row[SQUARED_ERROR] / scored) if scored else None,
            **{metric: row[metric] / row[USERS] for metric in RANKING_METRIC_NAMES},
            "coverage": row[PRODUCTS] / catalog_size if catalog_size > 0 else None,
        }
    return users, results


def evaluate_many(
    recs: dict[str, DataFrame], actual: DataFrame, k: int, catalog_size: int
) -> dict[str, dict[str, float | None]]:
    """Ranking metrics and coverage of several top-k recommenders against the same `actual`
    (user_idx, actual array of product indices), in one Spark job.

    Users of `actual` without any recommendation count as all misses; coverage counts the
    products recommended to the users of `actual`. RMSE is not computed here (None).
    """
    require_columns(actual, (USER_IDX, ACTUAL), "evaluate_many")
    held = actual.select(USER_IDX, F.col(ACTUAL).cast("array<int>").alias(ACTUAL))
    empty = F.array().cast("array<int>")
    tables = [
        held.join(ranked_lists(df.where(F.col(RANK) <= k)), USER_IDX, "left").select(
            F.lit(name).alias(RECOMMENDER),
            F.coalesce(F.col(PREDICTED), empty).alias(PREDICTED),
            ACTUAL,
        )
        for name, df in recs.items()
    ]
    table = tables[0]
    for other in tables[1:]:
        table = table.unionByName(other)
    partials = table.mapInArrow(_score_lists(k), SCORED_SCHEMA)
    _, results = summarize(partials, catalog_size, tuple(recs))
    return {
        name: {metric: v for metric, v in figures.items() if metric != "rmse"}
        for name, figures in results.items()
    }


def evaluate_lists(
    recs: DataFrame, actual: DataFrame, k: int, catalog_size: int
) -> dict[str, float | None]:
    """Ranking metrics and coverage of one top-k recommender (see evaluate_many)."""
    return evaluate_many({"recs": recs}, actual, k, catalog_size)["recs"]


def decide(
    model: dict[str, Any], baseline: dict[str, Any], metric: str, margin: float
) -> tuple[bool, str]:
    """Accept unless model[metric] < baseline[metric] * (1 - margin); say why either way."""
    m, b = model.get(metric), baseline.get(metric)
    if m is None or b is None or (isinstance(m, float) and math.isnan(m)):
        return False, f"{metric} could not be computed (model {m}, baseline {b}): no held-out users"
    threshold = b * (1.0 - margin)
    if m < threshold:
        return False, f"model {metric} {m:.4g} < baseline {b:.4g} * (1 - {margin:g})"
    return True, f"model {metric} {m:.4g} >= baseline {b:.4g} * (1 - {margin:g})"


def score_users(
    model: ALSModel,
    train: DataFrame,
    test: DataFrame,
    *,
    k: int,
    top_n: int,
    exclude_purchased: bool,
    implicit_prefs: bool,
    num_chunks: int = 1,
) -> DataFrame:
    """One pass of the `blocked` scorer over the model's users: SCORED_SCHEMA rows holding the
    partial sums of the evaluation (model with RMSE, and the popularity baseline; read them with
    evaluation_of) and, if top_n > 0, every user's top_n recommendations with everything the
    user bought (train and test) left out when `exclude_purchased` (recommendations_of).

    Cache the result when both are read: the scoring then runs once. The pipeline calls
    score_user_lists with tables it already holds; this builds them from the two sides.
    """
    flagged = train.withColumn(HELD_OUT, F.lit(False)).unionByName(
        test.withColumn(HELD_OUT, F.lit(True))
    )
    return score_user_lists(
        model,
        side_lists(flagged, held_label(implicit_prefs)),
        rank_popular(training_side(product_sides(flagged))),
        k=k,
        top_n=top_n,
        exclude_purchased=exclude_purchased,
        num_chunks=num_chunks,
    )


def held_label(implicit_prefs: bool) -> Column:
    """What a held-out pair's prediction is compared with (RMSE): the preference 1.0 in
    implicit mode, else the pair's rating."""
    return F.lit(1.0) if implicit_prefs else F.col(RATING).cast("double")


def score_user_lists(
    model: ALSModel,
    lists: DataFrame,
    popular: DataFrame,
    *,
    k: int,
    top_n: int,
    exclude_purchased: bool,
    num_chunks: int = 1,
) -> DataFrame:
    """score_users from split.side_lists() output (its labels: held_label) and the training
    side's ranked popular list (rank, product_idx)."""
    require_columns(lists, (USER_IDX, TRAIN_PRODUCTS, HELD_PRODUCTS), "score_user_lists lists")
    require_columns(popular, (RANK, PRODUCT_IDX), "score_user_lists popular")
    held = F.col(HELD_PRODUCTS).alias(_HELD)
    bought = (F.col(TRAIN_PRODUCTS) if exclude_purchased else F.lit(None)).cast("array<int>")
    # Users the model knows; without recommendations to make, only those with held-out pairs.
    users = user_vectors(model).join(lists, USER_IDX, "left" if top_n > 0 else "inner")
    if top_n <= 0:
        users = users.where(F.size(HELD_PRODUCTS) > 0)
    users = users.select(USER_IDX, FEATURES, bought.alias(BOUGHT), held)
    chunks = chunk_users(users, (USER_IDX, FEATURES, BOUGHT, _HELD), num_chunks, _USERS)
    ranked = F.array_sort(
        F.collect_list(F.struct(RANK, F.col(PRODUCT_IDX).cast("int").alias(PRODUCT_IDX)))
    )
    popular_row = popular.agg(F.transform(ranked, lambda x: x[PRODUCT_IDX]).alias(_POPULAR))
    scorer = _score_users_chunks(k, top_n, exclude_purchased, SCORE_CELLS_PER_BLOCK)
    return (
        chunks.crossJoin(item_matrix_row(item_vectors(model), _ITEMS))
        .crossJoin(popular_row)
        .select(_USERS, _ITEMS, _POPULAR)
        .mapInArrow(scorer, SCORED_SCHEMA)
    )


def evaluation_of(scored: DataFrame, catalog_size: int) -> dict[str, Any]:
    """evaluate_split's result from score_users() output (one Spark job)."""
    test_users, ranked = summarize(scored, catalog_size, (MODEL, BASELINE))
    return _result(test_users, ranked)


def recommendations_of(scored: DataFrame) -> DataFrame:
    """(user_idx, product_idx, score, rank) recommendations from score_users() output."""
    return scored.where(F.col(USER_IDX).isNotNull()).select(*RECS_COLUMNS)


def _result(test_users: int, ranked: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    if test_users == 0:
        log.warning("no held-out pairs of known users: nothing to evaluate")
        empty = dict.fromkeys(METRIC_NAMES)
        return {"test_users": 0, "model": empty, "baseline": dict(empty)}
    ranked[BASELINE]["rmse"] = None
    return {"test_users": test_users, "model": ranked[MODEL], "baseline": ranked[BASELINE]}


def evaluate_split(
    model: ALSModel,
    train: DataFrame,
    test: DataFrame,
    *,
    k: int,
    exclude_purchased: bool,
    implicit_prefs: bool,
    catalog_size: int,
    num_chunks: int = 1,
    strategy: str = DEFAULT_STRATEGY,
) -> dict[str, Any]:
    """Model and popularity baseline on the same held-out users, same exclusion of train pairs.

    Evaluated users: those with held-out pairs whom the model knows (they have train pairs).
    RMSE: in implicit mode against preference 1.0 for every held-out pair, else the rating;
    over the held-out pairs of known users and known products (ALS's coldStartStrategy drop).
    """
    if strategy == "blocked":
        scored = score_users(
            model,
            train,
            test,
            k=k,
            top_n=0,
            exclude_purchased=exclude_purchased,
            implicit_prefs=implicit_prefs,
            num_chunks=num_chunks,
        )
        return evaluation_of(scored, catalog_size)
    test_users, ranked = _evaluate_recommended(
        model,
        train,
        test,
        k=k,
        exclude_purchased=exclude_purchased,
        implicit_prefs=implicit_prefs,
        catalog_size=catalog_size,
        num_chunks=num_chunks,
        strategy=strategy,
    )
    return _result(test_users, ranked)


def _evaluate_recommended(
    model: ALSModel,
    train: DataFrame,
    test: DataFrame,
    *,
    k: int,
    exclude_purchased: bool,
    implicit_prefs: bool,
    catalog_size: int,
    num_chunks: int,
    strategy: str,
) -> tuple[int, dict[str, dict[str, float | None]]]:
    """Any other strategy: top-k lists of model and baseline, then evaluate_many and RMSE."""
    users = test.select(USER_IDX).distinct().join(user_vectors(model).select(USER_IDX), USER_IDX)
    actual = held_out_lists(test, users).cache()
    exclude = bought_lists(train).cache() if exclude_purchased else None
    try:
        test_users = actual.count()
        if test_users == 0:
            return 0, {}
        model_recs = recommend_for_users(
            model, users, k, exclude=exclude, strategy=strategy, num_chunks=num_chunks
        )
        baseline_recs = popular_for_users(
            popular_products(train), users, k, exclude=exclude, num_chunks=num_chunks
        )
        ranked = evaluate_many(
            {MODEL: model_recs, BASELINE: baseline_recs}, actual, k, catalog_size
        )
        predictions = model.transform(test).withColumn(
            LABEL, F.lit(1.0) if implicit_prefs else F.col(RATING).cast("double")
        )
        ranked = {
            MODEL: {"rmse": rmse(predictions), **ranked[MODEL]},
            BASELINE: {"rmse": None, **ranked[BASELINE]},
        }
    finally:
        actual.unpersist()
        if exclude is not None:
            exclude.unpersist()
    return test_users, ranked
