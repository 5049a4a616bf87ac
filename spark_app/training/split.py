"""Split: hold out (user, product) pairs to evaluate the model on purchases it did not see.

Two modes:
- `random`: a seeded random split of the pairs (each pair lands in test with probability
  `test_fraction`, decided by a seeded hash of the pair).
- `latest`: per user, the most recently bought pairs are held out (about `test_fraction` of the
  user's pairs, at least one); users with a single pair stay wholly in train.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_contract.runs import QUANTITY_TOTAL
from spark_app.schema import PRODUCT_IDX, PURCHASES, RATING, USER_IDX
from spark_app.training.evaluate import held_label
from spark_app.training.prepare import LAST_EVENT_TIME, require_columns
from spark_app.training.recommend import rank_popular

log = logging.getLogger(__name__)

SPLIT_MODES = ("random", "latest")
_HASH_BUCKETS = 1_000_000  # resolution of the random split's test fraction
HELD_OUT = "held_out"  # boolean: the pair is in the test side
# side_lists(): per user, the products of each side
TRAIN_PRODUCTS = "train_products"  # array<int>
HELD_PRODUCTS = "held_products"  # array<struct<product_idx int, label double>>
HELD_LABEL = "label"
BUYERS = "buyers"  # product_sides(): users who bought the product (its pairs)
TRAIN_PURCHASES = "train_purchases"  # product_sides(): purchases over the training pairs
TRAIN_QUANTITY_TOTAL = "train_quantity"  # product_sides(): quantity over the training pairs


def flag_random(pairs: DataFrame, test_fraction: float, seed: int) -> DataFrame:
    """`pairs` with HELD_OUT set on a seeded random share of them.

    Each pair's side is decided by a seeded hash of (user_idx, product_idx): the same pair
    lands on the same side whatever the partitioning, in one pass and without the per-partition
    sort that DataFrame.randomSplit needs to be reproducible.
    """
    require_columns(pairs, (USER_IDX, PRODUCT_IDX), "split_random")
    draw = F.pmod(F.xxhash64(F.lit(seed), USER_IDX, PRODUCT_IDX), F.lit(_HASH_BUCKETS))
    return pairs.withColumn(HELD_OUT, draw < F.lit(int(round(test_fraction * _HASH_BUCKETS))))


def flag_latest(pairs: DataFrame, test_fraction: float) -> DataFrame:
    """`pairs` with HELD_OUT set on each user's latest pairs: max(1, floor(n * fraction)) of
    n >= 2 pairs.

    Order is by the pair's latest purchase time, then product index (ties are deterministic).
    At least one pair of every user stays in train.
    """
    require_columns(pairs, (USER_IDX, PRODUCT_IDX, LAST_EVENT_TIME), "split_latest")
    by_user = Window.partitionBy(USER_IDX)
    newest_first = by_user.orderBy(F.col(LAST_EVENT_TIME).desc(), F.col(PRODUCT_IDX).desc())
    n = F.count(F.lit(1)).over(by_user)
    held = F.greatest(F.lit(1), F.floor(n * F.lit(test_fraction)))
    return pairs.withColumn(
        HELD_OUT, (n >= 2) & (F.row_number().over(newest_first) <= F.least(held, n - 1))
    )


def flag_held_out(pairs: DataFrame, mode: str, test_fraction: float, seed: int) -> DataFrame:
    """`pairs` with the boolean HELD_OUT column by `mode`: `random` or `latest` (see the module
    docstring). One table to cache for both sides of the split."""
    if mode == "random":
        return flag_random(pairs, test_fraction, seed)
    if mode == "latest":
        return flag_latest(pairs, test_fraction)
    raise ValueError(f"unknown split mode {mode!r}; expected one of {SPLIT_MODES}")


def split_flagged(flagged: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(train, test) of flag_held_out() output, without the flag."""
    require_columns(flagged, (HELD_OUT,), "split_flagged")
    train = flagged.where(~F.col(HELD_OUT)).drop(HELD_OUT)
    test = flagged.where(F.col(HELD_OUT)).drop(HELD_OUT)
    return train, test


def side_lists(flagged: DataFrame, label: Column | None = None) -> DataFrame:
    """One row per user of flag_held_out() output: (user_idx, train_products: the products of
    the user's training pairs, held_products: (product_idx, label) of the held-out pairs; empty
    lists where a side has none). `label` defaults to 1.0.

    One group-by gives both sides: what the scorer needs per user (scoring.score_users),
    the users of the split and, with one row per product, every count (side_sizes).
    """
    require_columns(flagged, (USER_IDX, PRODUCT_IDX, HELD_OUT), "side_lists")
    held = F.col(HELD_OUT)
    product = F.col(PRODUCT_IDX).cast("int").alias(PRODUCT_IDX)
    value = (F.lit(1.0) if label is None else label).cast("double").alias(HELD_LABEL)
    return flagged.groupBy(USER_IDX).agg(
        F.collect_list(F.when(~held, product)).alias(TRAIN_PRODUCTS),
        F.collect_list(F.when(held, F.struct(product, value))).alias(HELD_PRODUCTS),
    )


def side_sizes(lists: DataFrame, sides: DataFrame) -> dict[str, int]:
    """Pairs, users, products, train and test counts from side_lists() output and one row per
    product (recommend.product_sides() output), in one Spark job (which also fills both tables
    if they are cached)."""
    require_columns(lists, (USER_IDX, TRAIN_PRODUCTS, HELD_PRODUCTS), "side_sizes lists")
    by_user = lists.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum(F.size(TRAIN_PRODUCTS)).alias("train"),
        F.sum(F.size(HELD_PRODUCTS)).alias("test"),
    )
    by_product = sides.agg(F.count(F.lit(1)).alias("products"))
    row = by_user.crossJoin(by_product).first()
    sizes = {name: int(row[name] or 0) for name in ("users", "products", "train", "test")}
    return {**sizes, "pairs": sizes["train"] + sizes["test"]}


def product_sides(flagged: DataFrame) -> DataFrame:
    """One row per product of flag_held_out() output: purchases, quantity and buyers over all
    its pairs, and the same over its training pairs (train_purchases = 0 when it has none).

    Both popular lists come from it: the published one (all pairs) and the baseline's
    (training side).
    """
    require_columns(flagged, (PRODUCT_IDX, PURCHASES, RATING, HELD_OUT), "product_sides")
    train = ~F.col(HELD_OUT)
    return flagged.groupBy(PRODUCT_IDX).agg(
        F.sum(PURCHASES).alias(PURCHASES),
        F.sum(RATING).cast("long").alias(QUANTITY_TOTAL),
        F.count(F.lit(1)).alias(BUYERS),
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


@dataclass(frozen=True)
class SplitSettings:
    """How to split: `mode` (random | latest), the held-out fraction and the random seed;
    `implicit_prefs` decides what a held-out pair's RMSE compares with (held_label)."""

    mode: str
    test_fraction: float
    seed: int
    implicit_prefs: bool


@dataclass(frozen=True)
class SplitSizes:
    pairs: int
    users: int
    products: int
    train: int
    test: int


@dataclass(frozen=True)
class Split:
    """The split stage's result: every pair, the training side, and per user (lists) and per
    product (sides) what the scorer and the popular lists need, with their counts."""

    pairs: DataFrame
    train: DataFrame
    test: DataFrame
    lists: DataFrame  # side_lists()
    sides: DataFrame  # product_sides()
    baseline_popular: DataFrame  # the training side's popular list: (rank, product_idx, ...)
    sizes: SplitSizes


def split_stage(
    pairs: DataFrame, settings: SplitSettings, cache: Callable[[DataFrame], DataFrame]
) -> Split:
    """Flag the held-out pairs and derive both sides' per-user and per-product tables; one job
    counts everything (and fills the tables `cache` keeps)."""
    flagged = cache(flag_held_out(pairs, settings.mode, settings.test_fraction, settings.seed))
    train, test = split_flagged(flagged)
    lists = cache(side_lists(flagged, held_label(settings.implicit_prefs)))
    sides = cache(product_sides(flagged))
    sizes = SplitSizes(**side_sizes(lists, sides))
    log.info("%d pairs of %d users and %d products; split %s: %d train, %d test pairs",
             sizes.pairs, sizes.users, sizes.products, settings.mode, sizes.train, sizes.test)
    return Split(flagged.drop(HELD_OUT), train, test, lists, sides,
                 rank_popular(training_side(sides)), sizes)
