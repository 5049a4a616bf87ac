"""Train: Spark MLlib ALS on the aggregated (user_idx, product_idx, rating) pairs.

Implicit mode (the default) treats `rating` = sum of quantities as the strength of an observed
preference: Spark turns it into a confidence 1 + alpha * rating for the preference 1.
Explicit mode fits the ratings themselves.
"""

from __future__ import annotations

import logging

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame

from spark_app.schema import PRODUCT_IDX, RATING, USER_IDX
from spark_app.training.prepare import require_columns

log = logging.getLogger(__name__)


def build_als(
    *,
    rank: int,
    max_iter: int,
    reg_param: float,
    alpha: float,
    implicit_prefs: bool,
    seed: int,
    num_blocks: int,
    cold_start_strategy: str = "drop",
) -> ALS:
    """An ALS estimator over this project's columns; num_blocks must be > 0 (resolved by caller)."""
    return ALS(
        rank=rank,
        maxIter=max_iter,
        regParam=reg_param,
        alpha=alpha,
        implicitPrefs=implicit_prefs,
        seed=seed,
        numUserBlocks=num_blocks,
        numItemBlocks=num_blocks,
        userCol=USER_IDX,
        itemCol=PRODUCT_IDX,
        ratingCol=RATING,
        coldStartStrategy=cold_start_strategy,
        nonnegative=False,
    )


def resolve_blocks(num_blocks: int, default_parallelism: int) -> int:
    """Configured block count, or the session's default parallelism when 0."""
    return num_blocks if num_blocks > 0 else max(1, default_parallelism)


def fit_als(ratings: DataFrame, als: ALS) -> ALSModel:
    """Fit `als` on (user_idx, product_idx, rating) rows."""
    require_columns(ratings, (USER_IDX, PRODUCT_IDX, RATING), "fit_als")
    return als.fit(ratings.select(USER_IDX, PRODUCT_IDX, RATING))
