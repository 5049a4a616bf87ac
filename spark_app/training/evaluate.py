"""Evaluate: RMSE and ranking metrics on held-out pairs, model beside the popularity baseline.

Ranking metrics come from Spark's RankingEvaluator on per-user arrays (array<double>):
- precision@k = hits in the first k / k (k even when fewer were recommended),
- recall@k = hits in the first k / number of held-out products of the user,
- NDCG@k with binary relevance,
- MAP@k = mean over users of (sum of precision@i at each hit position i <= k) / min(|held out|, k)
  (Spark's `meanAveragePrecisionAtK`; some libraries divide by |held out| or by the hits).
Coverage = distinct products recommended to the evaluated users / catalog size.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pyspark.errors import IllegalArgumentException
from pyspark.ml.evaluation import RankingEvaluator, RegressionEvaluator
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_app.schema import PREDICTION, PRODUCT_IDX, RANK, RATING, USER_IDX
from spark_app.training.prepare import require_columns
from spark_app.training.recommend import (
    DEFAULT_STRATEGY,
    bought_lists,
    popular_for_users,
    popular_products,
    recommend_for_users,
)

log = logging.getLogger(__name__)

PREDICTED = "predicted"  # array<double>: recommended products, best first
ACTUAL = "actual"  # array<double>: held-out products of the user
LABEL = "label"
RANKING_METRICS = {
    "precision_at_k": "precisionAtK",
    "recall_at_k": "recallAtK",
    "ndcg_at_k": "ndcgAtK",
    "map_at_k": "meanAveragePrecisionAtK",
}
METRIC_NAMES = ("rmse", *RANKING_METRICS, "coverage")


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
    """(user_idx, actual array<double>) of the held-out products of each user in `users`."""
    require_columns(test, (USER_IDX, PRODUCT_IDX), "held_out_lists")
    return (
        test.join(users.select(USER_IDX).distinct(), USER_IDX)
        .groupBy(USER_IDX)
        .agg(F.collect_set(F.col(PRODUCT_IDX).cast("double")).alias(ACTUAL))
    )


def ranked_lists(recs: DataFrame) -> DataFrame:
    """(user_idx, predicted array<double>) from (user_idx, product_idx, rank) rows, best first."""
    require_columns(recs, (USER_IDX, PRODUCT_IDX, RANK), "ranked_lists")
    item = F.col(PRODUCT_IDX).cast("double").alias(PRODUCT_IDX)
    ordered = F.array_sort(F.collect_list(F.struct(RANK, item)))
    return recs.groupBy(USER_IDX).agg(
        F.transform(ordered, lambda x: x[PRODUCT_IDX]).alias(PREDICTED)
    )


def ranking_metrics(lists: DataFrame, k: int) -> dict[str, float | None]:
    """precision/recall/NDCG/MAP at k over (predicted, actual) array<double> rows.

    A user without recommendations must be present with an empty `predicted` (scores 0).
    """
    require_columns(lists, (PREDICTED, ACTUAL), "ranking_metrics")
    evaluator = RankingEvaluator(predictionCol=PREDICTED, labelCol=ACTUAL, k=k)
    values = {
        name: float(evaluator.setMetricName(spark_name).evaluate(lists))
        for name, spark_name in RANKING_METRICS.items()
    }
    return {name: None if math.isnan(v) else v for name, v in values.items()}


def coverage(lists: DataFrame, catalog_size: int, prediction_col: str = PREDICTED) -> float | None:
    """Share of the catalog that appears in at least one list of `prediction_col`."""
    if catalog_size <= 0:
        return None
    recommended = lists.select(F.explode(prediction_col).alias("_p")).distinct().count()
    return recommended / catalog_size


def _lists_of(recs: DataFrame, k: int, name: str) -> DataFrame:
    return ranked_lists(recs.where(F.col(RANK) <= k)).withColumnRenamed(PREDICTED, name)


def evaluate_many(
    recs: dict[str, DataFrame], actual: DataFrame, k: int, catalog_size: int
) -> dict[str, dict[str, float | None]]:
    """Ranking metrics and coverage of several top-k recommenders against the same `actual`
    (user_idx, actual), over one cached table.

    Users of `actual` without any recommendation count as all misses; coverage counts the
    products recommended to the users of `actual`.
    """
    table = actual
    for name, df in recs.items():
        table = table.join(_lists_of(df, k, name), USER_IDX, "left")
    empty = F.array().cast("array<double>")
    table = table.select(
        ACTUAL, *[F.coalesce(F.col(name), empty).alias(name) for name in recs]
    ).cache()
    try:
        results = {}
        for name in recs:
            lists = table.select(F.col(name).alias(PREDICTED), ACTUAL)
            metrics = ranking_metrics(lists, k)
            metrics["coverage"] = coverage(lists, catalog_size)
            results[name] = metrics
    finally:
        table.unpersist()
    return results


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
    RMSE: in implicit mode against preference 1.0 for every held-out pair, else the rating.
    """
    users = test.select(USER_IDX).distinct().join(train.select(USER_IDX).distinct(), USER_IDX)
    actual = held_out_lists(test, users).cache()
    exclude: DataFrame | None = None
    try:
        test_users = actual.count()
        if test_users == 0:
            log.warning("no held-out pairs of known users: nothing to evaluate")
            empty = dict.fromkeys(METRIC_NAMES)
            return {"test_users": 0, "model": empty, "baseline": dict(empty)}
        exclude = bought_lists(train).cache() if exclude_purchased else None
        model_recs = recommend_for_users(
            model, users, k, exclude=exclude, strategy=strategy, num_chunks=num_chunks
        )
        baseline_recs = popular_for_users(
            popular_products(train), users, k, exclude=exclude, num_chunks=num_chunks
        )
        ranked = evaluate_many(
            {"model": model_recs, "baseline": baseline_recs}, actual, k, catalog_size
        )
        predictions = model.transform(test).withColumn(
            LABEL, F.lit(1.0) if implicit_prefs else F.col(RATING).cast("double")
        )
        model_metrics: dict[str, float | None] = {"rmse": rmse(predictions), **ranked["model"]}
        baseline_metrics: dict[str, float | None] = {"rmse": None, **ranked["baseline"]}
    finally:
        actual.unpersist()
        if exclude is not None:
            exclude.unpersist()
    return {"test_users": test_users, "model": model_metrics, "baseline": baseline_metrics}
