"""Factors: what the API server needs from a run, as Parquet under the run's factors/ folder.

The model's user and item factors keyed by the raw ids (not the job's integer ALS ids, which
only the job's id maps can translate), and every (user, product) pair of the run with the units
bought: the server leaves a user's purchases out of their answers, and re-solves a user's
vector when new purchases arrive (the fold-in needs the model's `als` parameters too, which the
manifest holds). Layout and columns: docs/run-format.md, names in recsys_contract/runs.py.
"""

from __future__ import annotations

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_contract.runs import (
    FACTORS_DIR,
    ITEM_FACTORS,
    PURCHASED_QUANTITY,
    PURCHASES_PARQUET,
    USER_FACTORS,
    VECTOR,
)
from spark_app.schema import PRODUCT_ID, PRODUCT_IDX, RATING, USER_ID, USER_IDX
from spark_app.training.export import RunDraft
from spark_app.training.prepare import require_columns


def factor_tables(
    model: ALSModel, user_map: DataFrame, product_map: DataFrame, pairs: DataFrame
) -> dict[str, DataFrame]:
    """The factors/ tables by file name: users (user_id, vector), items (product_id, vector),
    purchases (user_id, product_id, quantity) of `pairs` (user_idx, product_idx, rating)."""
    require_columns(pairs, (USER_IDX, PRODUCT_IDX, RATING), "factor_tables")
    users = user_map.select(USER_ID, USER_IDX)
    products = product_map.select(PRODUCT_ID, PRODUCT_IDX)
    return {
        USER_FACTORS: model.userFactors.select(
            F.col("id").alias(USER_IDX), F.col("features").alias(VECTOR)
        ).join(users, USER_IDX).select(USER_ID, VECTOR),
        ITEM_FACTORS: model.itemFactors.select(
            F.col("id").alias(PRODUCT_IDX), F.col("features").alias(VECTOR)
        ).join(products, PRODUCT_IDX).select(PRODUCT_ID, VECTOR),
        PURCHASES_PARQUET: pairs.join(users, USER_IDX).join(products, PRODUCT_IDX).select(
            USER_ID, PRODUCT_ID, F.col(RATING).cast("double").alias(PURCHASED_QUANTITY)
        ),
    }


def write_factors(
    draft: RunDraft,
    model: ALSModel,
    user_map: DataFrame,
    product_map: DataFrame,
    pairs: DataFrame,
) -> None:
    """Start writing the factors/ tables into the run draft (published with the run)."""
    for name, table in factor_tables(model, user_map, product_map, pairs).items():
        draft.write_parquet(f"{FACTORS_DIR}/{name}", table)
