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

from pyspark.ml.evaluation import RankingEvaluator, RegressionEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_app.schema import PREDICTION, PRODUCT_IDX, RANK, USER_IDX
from spark_app.training.prepare import require_columns

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


def rmse(predictions: DataFrame, label_col: str = LABEL, prediction_col: str = PREDICTION) -> float | None:
    """Root mean squared error of prediction vs label; None when there is nothing to score."""
    scored = predictions.where(F.col(prediction_col).isNotNull() & ~F.isnan(prediction_col))
    if scored.isEmpty():
        return None
    evaluator = RegressionEvaluator(
        metricName="rmse", labelCol=label_col, predictionCol=prediction_col
    )
    return float(evaluator.evaluate(scored))


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
    ordered = F.array_sort(F.collect_list(F.struct(RANK, F.col(PRODUCT_IDX).cast("double"))))
    return recs.groupBy(USER_IDX).agg(
        F.transform(ordered, lambda x: x[PRODUCT_IDX]).alias(PREDICTED)
    )


def ranking_metrics(lists: DataFrame, k: int) -> dict[str, float | None]:
    """precision/recall/NDCG/MAP at k over (predicted, actual) array<double> rows.

    A user without recommendations must be present with an empty `predicted` (scores 0).
    """
    require_columns(lists, (PREDICTED, ACTUAL), "ranking_metrics")
    if lists.isEmpty():
        return dict.fromkeys(RANKING_METRICS)
    evaluator = RankingEvaluator(predictionCol=PREDICTED, labelCol=ACTUAL, k=k)
    return {
        name: float(evaluator.setMetricName(spark_name).evaluate(lists))
        for name, spark_name in RANKING_METRICS.items()
    }


def coverage(recs: DataFrame, catalog_size: int) -> float | None:
    """Share of the catalog that appears in at least one recommendation list."""
    if catalog_size <= 0:
        return None
    return recs.select(PRODUCT_IDX).distinct().count() / catalog_size


def evaluate_lists(
    recs: DataFrame, actual: DataFrame, k: int, catalog_size: int
) -> dict[str, float | None]:
    """Ranking metrics and coverage of top-k `recs` against `actual` (user_idx, actual).

    Users of `actual` without any recommendation count as all misses.
    """
    top_k = recs.where(F.col(RANK) <= k)
    lists = actual.join(ranked_lists(top_k), USER_IDX, "left").select(
        F.coalesce(F.col(PREDICTED), F.array().cast("array<double>")).alias(PREDICTED), ACTUAL
    ).cache()
    try:
        metrics = ranking_metrics(lists, k)
    finally:
        lists.unpersist()
    metrics["coverage"] = coverage(top_k.join(actual.select(USER_IDX), USER_IDX), catalog_size)
    return metrics


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
