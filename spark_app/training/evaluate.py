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

from pyspark.sql import Column
from pyspark.sql import functions as F

from spark_app.schema import RATING

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
