"""Evaluate: decide whether a model is good enough to publish, and say why.

The figures come from the scorer's one pass (scoring.evaluation_of): ranking metrics at k
following Spark's RankingMetrics (precision@k = hits / k, recall@k = hits / held-out, NDCG@k
with binary relevance, MAP@k dividing by min(held-out, k)), averaged over the evaluated users,
coverage = distinct products recommended to them / catalog size, and the RMSE over the held-out
pairs of known products. tests/unit/test_training_evaluate.py checks them against hand-computed
values and against Spark's RankingEvaluator and RegressionEvaluator.
"""

from __future__ import annotations

import math
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_app.schema import PRODUCT_IDX, RATING, USER_IDX

# What the RMSE compares each held-out pair's prediction with (metrics.json `rmse_against`).
RMSE_AGAINST_PREFERENCE = "preference"  # implicit mode: 1.0, the pair was bought
RMSE_AGAINST_RATING = "rating"  # explicit mode: the pair's rating


def held_label(implicit_prefs: bool) -> Column:
    """What a held-out pair's prediction is compared with (RMSE): the preference 1.0 in
    implicit mode, else the pair's rating."""
    return F.lit(1.0) if implicit_prefs else F.col(RATING).cast("double")


def rmse_against(implicit_prefs: bool) -> str:
    """The name of held_label's choice, for metrics.json."""
    return RMSE_AGAINST_PREFERENCE if implicit_prefs else RMSE_AGAINST_RATING


def bias_baseline_rmse(train: DataFrame, test: DataFrame, reg: float) -> float | None:
    """RMSE of the rating baseline on the held-out pairs of users and products the training
    side knows (those the model scores): global mean + item bias + user bias, each bias the
    regularised mean of what is left (Koren's baseline predictor), fitted on `train`."""
    mean = train.agg(F.avg(RATING)).first()[0]
    if mean is None:
        return None
    residual = F.col(RATING) - F.lit(mean)
    item_bias = train.groupBy(PRODUCT_IDX).agg(
        (F.sum(residual) / (F.count(F.lit(1)) + F.lit(reg))).alias("_bi"))
    user_bias = (
        train.join(item_bias, PRODUCT_IDX)
        .groupBy(USER_IDX)
        .agg((F.sum(residual - F.col("_bi")) / (F.count(F.lit(1)) + F.lit(reg))).alias("_bu"))
    )
    predicted = F.lit(mean) + F.col("_bu") + F.col("_bi")
    value = (
        test.join(user_bias, USER_IDX)
        .join(item_bias, PRODUCT_IDX)
        .agg(F.sqrt(F.avg((F.col(RATING) - predicted) ** 2)))
        .first()[0]
    )
    return None if value is None else float(value)


def decide_by_rmse(model_rmse: float | None, baseline_rmse: float | None,
                   margin: float) -> tuple[bool, str]:
    """Explicit mode: accept unless the model's RMSE > the baseline's * (1 - margin)."""
    if model_rmse is None or baseline_rmse is None:
        return False, (f"rmse could not be computed (model {model_rmse}, bias baseline "
                       f"{baseline_rmse}): no held-out pairs of known users and products")
    limit = baseline_rmse * (1.0 - margin)
    verdict = "<=" if model_rmse <= limit else ">"
    return model_rmse <= limit, (f"model rmse {model_rmse:.4g} {verdict} bias baseline "
                                 f"{baseline_rmse:.4g} * (1 - {margin:g})")


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
