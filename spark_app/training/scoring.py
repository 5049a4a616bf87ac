"""Score: the one pass that evaluates the model and recommends, in the Python workers.

Users are grouped into chunks; each chunk meets the whole item matrix and the popular list once
(a cross join with one-row tables) and a worker ranks it with numpy (kernels.py): the held-out
pairs' predictions (RMSE), the model's and the popularity baseline's top-k lists against the
held-out products (ranking metrics), and every user's top-N recommendations with what they
bought left out. The output mixes recommendation rows and per-chunk partial sums: read them
with `evaluation_of` and `recommendations_of`, caching it when both are read.

Limit: one task holds the whole item-factor matrix (products x rank x 4 bytes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pyspark import cloudpickle
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_contract.runs import BASELINE, METRIC_NAMES, MODEL, RANKING_METRIC_NAMES
from spark_app.schema import PRODUCT_IDX, RANK, SCORE, USER_IDX
from spark_app.training import kernels
from spark_app.training.prepare import require_columns
from spark_app.training.split import HELD_PRODUCTS, TRAIN_PRODUCTS

# The workers get the kernels' code with the function (they need not import spark_app).
cloudpickle.register_pickle_by_value(kernels)

FEATURES = "features"
RECOMMENDER = "recommender"
USERS = "users"
SQUARED_ERROR = "squared_error"
SCORED = "scored"
PRODUCTS = "products"
DIVERSITY = "diversity"
DIVERSE_USERS = "diverse_users"
RECS_COLUMNS = (USER_IDX, PRODUCT_IDX, SCORE, RANK)
SCORED_SCHEMA = (
    f"{USER_IDX} int, {PRODUCT_IDX} int, {SCORE} float, {RANK} int, "
    f"{RECOMMENDER} string, {USERS} long, "
    + "".join(f"{name} double, " for name in RANKING_METRIC_NAMES)
    + f"{SQUARED_ERROR} double, {SCORED} long, {PRODUCTS} array<int>, "
    f"{DIVERSITY} double, {DIVERSE_USERS} long"
)
# Users scored by one task: every chunk costs the item matrix converted to Arrow again and a
# task; the scorer's memory does not grow with the chunk (it scores a block of cells at a time).
USERS_PER_CHUNK = 32768
_USERS, _ITEMS, _POPULAR, _BOUGHT, _HELD, _CHUNK = (
    "_users", "_items", "_popular", "_bought", "_held", "_chunk")


def user_vectors(model: ALSModel) -> DataFrame:
    """The model's user factors as (user_idx, features)."""
    return model.userFactors.select(F.col("id").alias(USER_IDX), FEATURES)


def item_vectors(model: ALSModel) -> DataFrame:
    """The model's item factors as (product_idx, features)."""
    return model.itemFactors.select(F.col("id").alias(PRODUCT_IDX), FEATURES)


def scoring_chunks(users: int, parallelism: int) -> int:
    """Chunks of at most USERS_PER_CHUNK users, a multiple of the cores (one task each)."""
    per_core = max(1, math.ceil(users / USERS_PER_CHUNK / parallelism))
    return per_core * parallelism


def chunk_users(users: DataFrame, columns: tuple[str, ...], num_chunks: int) -> DataFrame:
    """One row per chunk of users (user_idx modulo num_chunks): a list of structs of `columns`;
    chunk c in partition c, so each chunk is one task of the scorer."""
    n = max(1, num_chunks)
    return (
        users.groupBy(F.pmod(F.col(USER_IDX), F.lit(n)).alias(_CHUNK))
        .agg(F.collect_list(F.struct(*columns)).alias(_USERS))
        .repartitionById(n, _CHUNK)
    )


def score_users(
    users: DataFrame,
    items: DataFrame,
    lists: DataFrame,
    popular: DataFrame,
    *,
    k: int,
    top_n: int,
    exclude_purchased: bool,
    num_chunks: int = 1,
) -> DataFrame:
    """The scored rows (SCORED_SCHEMA) of `users` (user_idx, features) against `items`
    (product_idx, features): split.side_lists() output gives each user's sides (`lists`), the
    training side's ranked popular list (rank, product_idx) the baseline. With top_n = 0 only
    the users with held-out pairs are scored, for the evaluation alone."""
    require_columns(lists, (USER_IDX, TRAIN_PRODUCTS, HELD_PRODUCTS), "score_users lists")
    require_columns(popular, (RANK, PRODUCT_IDX), "score_users popular")
    bought = (F.col(TRAIN_PRODUCTS) if exclude_purchased else F.lit(None)).cast("array<int>")
    scored = users.join(lists, USER_IDX, "left" if top_n > 0 else "inner")
    if top_n <= 0:
        scored = scored.where(F.size(HELD_PRODUCTS) > 0)
    scored = scored.select(USER_IDX, FEATURES, bought.alias(_BOUGHT),
                           F.col(HELD_PRODUCTS).alias(_HELD))
    chunks = chunk_users(scored, (USER_IDX, FEATURES, _BOUGHT, _HELD), num_chunks)
    ranked = F.array_sort(
        F.collect_list(F.struct(RANK, F.col(PRODUCT_IDX).cast("int").alias(PRODUCT_IDX)))
    )
    popular_row = popular.agg(F.transform(ranked, lambda x: x[PRODUCT_IDX]).alias(_POPULAR))
    item_row = items.agg(F.collect_list(F.struct(PRODUCT_IDX, FEATURES)).alias(_ITEMS))
    return (
        chunks.crossJoin(item_row)
        .crossJoin(popular_row)
        .select(_USERS, _ITEMS, _POPULAR)
        .mapInArrow(_scorer(k, top_n, exclude_purchased), SCORED_SCHEMA)
    )


def _scorer(k: int, top_n: int, exclude_held: bool) -> Callable[[Iterator], Iterator]:
    """The mapInArrow function: one call of kernels.score_chunk per chunk row (a closure, so
    that it travels to the workers by value, with the kernels)."""

    def score(batches: Iterator) -> Iterator:
        for batch in batches:
            users, items, popular = (batch.column(c) for c in ("_users", "_items", "_popular"))
            for row in range(batch.num_rows):
                yield from kernels.score_chunk(
                    users[row].values, items[row].values, popular[row].values,
                    k=k, top_n=top_n, exclude_held=exclude_held,
                )

    return score


@dataclass(frozen=True)
class Evaluation:
    """The model and the baseline on the held-out pairs of the users the model knows."""

    test_users: int  # users with held-out pairs that were evaluated
    rmse_pairs: int  # held-out pairs of known products whose prediction the RMSE covers
    model: dict[str, float | None]
    baseline: dict[str, float | None]
    # Mean intra-list diversity of the recommendations made in the same pass (top_n > 0).
    intra_list_diversity: float | None = None


def evaluation_of(scored: DataFrame, catalog_size: int) -> Evaluation:
    """The evaluation from score_users() output, in one Spark job (a collect of two rows).

    Ranking metrics are averages over the evaluated users; coverage = distinct products in
    their lists / catalog size; RMSE over the scored held-out pairs (None for the baseline,
    and for a recommender without evaluated users everything is None)."""
    rows = (
        scored.where(F.col(RECOMMENDER).isNotNull())
        .groupBy(RECOMMENDER)
        .agg(
            F.sum(USERS).alias(USERS),
            *[F.sum(name).alias(name) for name in RANKING_METRIC_NAMES],
            F.sum(SQUARED_ERROR).alias(SQUARED_ERROR),
            F.sum(SCORED).alias(SCORED),
            F.size(F.array_distinct(F.flatten(F.collect_list(PRODUCTS)))).alias(PRODUCTS),
            F.sum(DIVERSITY).alias(DIVERSITY),
            F.sum(DIVERSE_USERS).alias(DIVERSE_USERS),
        )
        .collect()
    )
    found = {row[RECOMMENDER]: row for row in rows}
    figures: dict[str, dict[str, float | None]] = {}
    for name in (MODEL, BASELINE):
        row = found.get(name)
        if row is None or not row[USERS]:
            figures[name] = dict.fromkeys(METRIC_NAMES)
            continue
        scored_pairs = int(row[SCORED] or 0)
        figures[name] = {
            "rmse": math.sqrt(row[SQUARED_ERROR] / scored_pairs) if scored_pairs else None,
            **{metric: row[metric] / row[USERS] for metric in RANKING_METRIC_NAMES},
            "coverage": row[PRODUCTS] / catalog_size if catalog_size > 0 else None,
        }
    figures[BASELINE]["rmse"] = None  # the popularity list predicts nothing
    model_row = found.get(MODEL)
    if model_row is None:
        return Evaluation(0, 0, figures[MODEL], figures[BASELINE])
    diverse = int(model_row[DIVERSE_USERS] or 0)
    return Evaluation(int(model_row[USERS] or 0), int(model_row[SCORED] or 0), figures[MODEL],
                      figures[BASELINE], model_row[DIVERSITY] / diverse if diverse else None)


def recommendations_of(scored: DataFrame) -> DataFrame:
    """(user_idx, product_idx, score, rank) recommendations from score_users() output."""
    return scored.where(F.col(USER_IDX).isNotNull()).select(*RECS_COLUMNS)
