"""Split: hold out (user, product) pairs to evaluate the model on purchases it did not see.

Two modes:
- `random`: a seeded random split of the pairs (each pair lands in test with probability
  `test_fraction`, decided by a seeded hash of the pair).
- `latest`: per user, the most recently bought pairs are held out (about `test_fraction` of the
  user's pairs, at least one); users with a single pair stay wholly in train.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_app.schema import PRODUCT_IDX, USER_IDX
from spark_app.training.prepare import LAST_EVENT_TIME, require_columns

log = logging.getLogger(__name__)

SPLIT_MODES = ("random", "latest")
_HASH_BUCKETS = 1_000_000  # resolution of the random split's test fraction


def split_random(pairs: DataFrame, test_fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """Seeded random split of the pairs into (train, test).

    Each pair's side is decided by a seeded hash of (user_idx, product_idx): the same pair
    lands on the same side whatever the partitioning, in one pass and without the per-partition
    sort that DataFrame.randomSplit needs to be reproducible.
    """
    require_columns(pairs, (USER_IDX, PRODUCT_IDX), "split_random")
    draw = F.pmod(F.xxhash64(F.lit(seed), USER_IDX, PRODUCT_IDX), F.lit(_HASH_BUCKETS))
    in_test = draw < F.lit(int(round(test_fraction * _HASH_BUCKETS)))
    return pairs.where(~in_test), pairs.where(in_test)


def split_latest(pairs: DataFrame, test_fraction: float) -> tuple[DataFrame, DataFrame]:
    """Hold out each user's latest pairs: max(1, floor(n * fraction)) of n >= 2 pairs.

    Order is by the pair's latest purchase time, then product index (ties are deterministic).
    At least one pair of every user stays in train.
    """
    require_columns(pairs, (USER_IDX, PRODUCT_IDX, LAST_EVENT_TIME), "split_latest")
    by_user = Window.partitionBy(USER_IDX)
    newest_first = by_user.orderBy(F.col(LAST_EVENT_TIME).desc(), F.col(PRODUCT_IDX).desc())
    n = F.count(F.lit(1)).over(by_user)
    held = F.greatest(F.lit(1), F.floor(n * F.lit(test_fraction)))
    flagged = pairs.withColumn(
        "_test", (n >= 2) & (F.row_number().over(newest_first) <= F.least(held, n - 1))
    )
    train = flagged.where(~F.col("_test")).drop("_test")
    test = flagged.where(F.col("_test")).drop("_test")
    return train, test


def split_pairs(
    pairs: DataFrame, mode: str, test_fraction: float, seed: int
) -> tuple[DataFrame, DataFrame]:
    """(train, test) by `mode`: `random` or `latest` (see the module docstring)."""
    if mode == "random":
        return split_random(pairs, test_fraction, seed)
    if mode == "latest":
        return split_latest(pairs, test_fraction)
    raise ValueError(f"unknown split mode {mode!r}; expected one of {SPLIT_MODES}")
