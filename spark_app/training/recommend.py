"""Recommend: the popular lists (published, and the baseline's) and the named recommendations.

The model's top-N per user comes from the scorer (scoring.py), which makes them in the same pass
as the evaluation; here they get their raw ids back. The popular list is what a user the model
does not know is served, and, ranked over the training pairs only, the evaluation's baseline.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_contract.runs import QUANTITY_TOTAL
from spark_app.schema import (
    PRODUCT_ID,
    PRODUCT_IDX,
    PURCHASES,
    RANK,
    SCORE,
    USER_ID,
    USER_IDX,
)
from spark_app.training.prepare import require_columns


def rank_popular(totals: DataFrame, n: int | None = None) -> DataFrame:
    """(rank, product_idx, purchases, quantity) of (product_idx, purchases, quantity) totals,
    ranked by purchases, then quantity, then index; the first n if given.

    Ranked in one sorted list (one row, as the scorer's item matrix: the catalog in one task),
    not by a window over the whole table; with n, a distributed top-n first."""
    require_columns(totals, (PRODUCT_IDX, PURCHASES, QUANTITY_TOTAL), "rank_popular")
    if n is not None:
        totals = totals.orderBy(F.col(PURCHASES).desc(), F.col(QUANTITY_TOTAL).desc(),
                                F.col(PRODUCT_IDX).asc()).limit(n)
    key = F.struct(-F.col(PURCHASES), -F.col(QUANTITY_TOTAL), F.col(PRODUCT_IDX),
                   F.col(PURCHASES).alias(PURCHASES), F.col(QUANTITY_TOTAL).alias(QUANTITY_TOTAL))
    ordered = totals.agg(F.array_sort(F.collect_list(key)).alias("_ranked"))
    ranked = ordered.select(F.posexplode("_ranked").alias("_pos", "_p"))
    return ranked.select(
        (F.col("_pos") + 1).cast("int").alias(RANK),
        F.col(f"_p.{PRODUCT_IDX}").alias(PRODUCT_IDX),
        F.col(f"_p.{PURCHASES}").alias(PURCHASES),
        F.col(f"_p.{QUANTITY_TOTAL}").alias(QUANTITY_TOTAL),
    )


def published_popular(sides: DataFrame, product_map: DataFrame, n: int) -> DataFrame:
    """popular.csv: (rank, product_id, purchases, quantity) over all pairs, first n, in order."""
    return (
        rank_popular(sides.select(PRODUCT_IDX, PURCHASES, QUANTITY_TOTAL), n)
        .join(product_map, PRODUCT_IDX)
        .select(RANK, PRODUCT_ID, PURCHASES, QUANTITY_TOTAL)
        .orderBy(RANK)
    )


def named_recommendations(
    recs: DataFrame, user_map: DataFrame, product_map: DataFrame
) -> DataFrame:
    """(user_id, product_id, score, rank) of (user_idx, product_idx, score, rank) rows."""
    return (
        recs.join(user_map, USER_IDX)
        .join(product_map, PRODUCT_IDX)
        .select(USER_ID, PRODUCT_ID, SCORE, RANK)
    )
