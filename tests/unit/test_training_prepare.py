"""Prepare and split: pair aggregation, stable id mapping, the two split modes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_app.errors import MissingColumnError
from spark_app.schema import (
    EVENT_TIME,
    PRODUCT_ID,
    PRODUCT_IDX,
    QUANTITY,
    RATING,
    USER_ID,
    USER_IDX,
)
from spark_app.training.prepare import (
    LAST_EVENT_TIME,
    aggregate_indexed_pairs,
    attach_indices,
    pairs_by_user,
    update_id_map,
    update_id_maps,
)
from spark_app.training.split import (
    HELD_PRODUCTS,
    TRAIN_PRODUCTS,
    flag_held_out,
    flag_latest,
    side_lists,
    side_sizes,
    split_flagged,
)
from tests.training_data import events_df

T0 = datetime(2026, 11, 27, 10, 0, 0)
T1 = datetime(2026, 11, 27, 11, 0, 0)
T2 = datetime(2026, 11, 27, 12, 0, 0)


def _event(i: int, user: str, product: str, quantity: int, when: datetime) -> tuple:
    return (f"e{i}", user, product, quantity, when, None, "sales", 0, i, None)


NAMED_PAIRS = (
    "user_id string, product_id string, rating double, purchases long, "
    "last_event_time timestamp"
)


def _prepare(spark: SparkSession, events: DataFrame, state: Path) -> DataFrame:
    """What the pipeline's prepare stage does (id maps from the events, then integer pairs),
    with the raw ids joined back: the indices themselves are the maps' business."""
    users, products = update_id_maps(spark, events, state)
    pairs = aggregate_indexed_pairs(attach_indices(events, users, products))
    return pairs.join(users, USER_IDX).join(products, PRODUCT_IDX).select(
        USER_ID, PRODUCT_ID, "rating", "purchases", "last_event_time")


def test_pairs_sum_quantity_and_count_purchases_by_integer_pair(spark, tmp_path: Path) -> None:
    # Aggregated by (user_idx, product_idx) after mapping: the same pairs as aggregating by
    # the string ids.
    events = events_df(
        spark,
        [
            _event(1, "a", "x", 2, T0),
            _event(2, "a", "x", 3, T2),
            _event(3, "a", "y", 1, T1),
            _event(4, "b", "x", 4, T1),
        ],
    )
    expected = spark.createDataFrame(
        [("a", "x", 5.0, 2, T2), ("a", "y", 1.0, 1, T1), ("b", "x", 4.0, 1, T1)], NAMED_PAIRS
    )
    assert_df_equality(
        _prepare(spark, events, tmp_path), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_later_run_pairs_keep_the_indices_of_earlier_runs(spark, tmp_path: Path) -> None:
    # Run 1 maps users c, a and product y; run 2 adds b and x: a and y keep their indices.
    run1 = events_df(spark, [_event(1, "c", "y", 1, T0), _event(2, "a", "y", 1, T0)])
    first_users, first_products = update_id_maps(spark, run1, tmp_path)
    known = (set(first_users.collect()), set(first_products.collect()))
    run2 = events_df(
        spark,
        [_event(3, "b", "x", 2, T1), _event(4, "a", "y", 3, T2), _event(5, "a", "x", 1, T1)],
    )
    users, products = update_id_maps(spark, run2, tmp_path)
    assert (known[0] <= set(users.collect()), known[1] <= set(products.collect()),
            sorted(r[USER_IDX] for r in users.collect()),
            sorted(r[PRODUCT_IDX] for r in products.collect())) == (
        True, True, [0, 1, 2], [0, 1])


def test_aggregating_events_without_indices_names_the_missing_columns(spark) -> None:
    events = events_df(spark, [_event(1, "a", "x", 1, T0)])
    with pytest.raises(MissingColumnError, match="aggregate_indexed_pairs needs columns"):
        aggregate_indexed_pairs(events)


def test_id_map_keeps_old_indices_and_numbers_new_ids_after_max(spark, tmp_path: Path) -> None:
    map_dir = tmp_path / "users"
    run1 = spark.createDataFrame([("c",), ("a",), ("b",), ("a",)], "user_id string")
    run2 = spark.createDataFrame([("b",), ("e",), ("a",), ("d",)], "user_id string")
    first = dict(update_id_map(spark, run1, map_dir, USER_ID, USER_IDX).collect())
    second = dict(update_id_map(spark, run2, map_dir, USER_ID, USER_IDX).collect())
    assert ({k: second[k] for k in first} == first, sorted(first.values()),
            sorted(second[k] for k in ("d", "e"))) == (True, [0, 1, 2], [3, 4])


def test_new_ids_are_numbered_densely_across_partitions(spark, tmp_path: Path) -> None:
    ids = spark.createDataFrame([(f"u{i}",) for i in range(500)], "user_id string").repartition(7)
    numbered = update_id_map(spark, ids, tmp_path / "users", USER_ID, USER_IDX)
    assert sorted(r[USER_IDX] for r in numbered.collect()) == list(range(500))


def test_id_map_without_new_ids_keeps_the_same_version(spark, tmp_path: Path) -> None:
    map_dir = tmp_path / "products"
    ids = spark.createDataFrame([("x",), ("y",)], "product_id string")
    update_id_map(spark, ids, map_dir, PRODUCT_ID, PRODUCT_IDX)
    update_id_map(spark, ids, map_dir, PRODUCT_ID, PRODUCT_IDX)
    assert (map_dir / "CURRENT").read_text().strip() == "v-000001"


def _indexed_pairs(spark):
    return spark.createDataFrame(
        [
            (1, 10, 1.0, 1, T0),
            (1, 11, 1.0, 1, T2),
            (1, 12, 1.0, 1, T1),
            (1, 13, 1.0, 1, T0),
            (1, 14, 1.0, 1, T0),
            (2, 10, 1.0, 1, T0),
            (3, 10, 1.0, 1, T0),
            (3, 11, 1.0, 1, T1),
        ],
        "user_idx int, product_idx int, rating double, purchases long, last_event_time timestamp",
    )


def _shuffles(df: DataFrame) -> int:
    """Exchanges (shuffles) in the physical plan that would compute `df`."""
    return df._jdf.queryExecution().executedPlan().toString().count("Exchange hashpartitioning")


def test_pairs_by_user_let_the_per_user_lists_reuse_their_shuffle(spark) -> None:
    # One shuffle, by user, before the pairs' aggregation; side_lists adds none.
    events = _indexed_pairs(spark).select(
        USER_IDX, PRODUCT_IDX, F.lit(1).alias(QUANTITY), F.col(LAST_EVENT_TIME).alias(EVENT_TIME)
    )
    flagged = flag_held_out(pairs_by_user(events), "random", 0.3, seed=3)
    assert _shuffles(side_lists(flagged)) == 1


def test_latest_split_holds_out_each_users_newest_pairs(spark) -> None:
    # user 1: 5 pairs, floor(5 * 0.4) = 2 newest held out; user 2: one pair stays in train;
    # user 3: 2 pairs, max(1, floor(0.8)) = 1 held out.
    _, test = split_flagged(flag_held_out(_indexed_pairs(spark), "latest", 0.4, seed=0))
    expected = spark.createDataFrame([(1, 11), (1, 12), (3, 11)], "user_idx int, product_idx int")
    assert_df_equality(
        test.select(USER_IDX, PRODUCT_IDX), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_random_split_partitions_the_pairs(spark) -> None:
    pairs = _indexed_pairs(spark).cache()
    train, test = split_flagged(flag_held_out(pairs, "random", 0.3, seed=3))
    assert_df_equality(train.unionByName(test), pairs, ignore_row_order=True)


def test_side_sizes_count_pairs_users_products_and_both_sides(spark) -> None:
    # _indexed_pairs: 8 pairs of 3 users over products 10..14; latest split 0.4 holds out 3.
    flagged = flag_latest(_indexed_pairs(spark), 0.4)
    sizes = side_sizes(side_lists(flagged), flagged.select(PRODUCT_IDX).distinct())
    assert sizes == {"pairs": 8, "users": 3, "products": 5, "train": 5, "test": 3}


def test_side_lists_hold_each_users_products_of_both_sides(spark) -> None:
    # latest split 0.4: user 1 holds out 11 (T2) and 12 (T1); user 2 keeps its one pair;
    # user 3 holds out 11. Labels: the pair's rating (here 1.0 + product_idx / 100).
    pairs = _indexed_pairs(spark).withColumn(RATING, 1.0 + F.col(PRODUCT_IDX) / 100)
    lists = side_lists(flag_latest(pairs, 0.4), label=F.col(RATING))
    expected = spark.createDataFrame(
        [
            (1, [10, 13, 14], [(11, 1.11), (12, 1.12)]),
            (2, [10], []),
            (3, [10], [(11, 1.11)]),
        ],
        "user_idx int, train_products array<int>, "
        "held_products array<struct<product_idx int, label double>>",
    )
    in_order = lists.select(
        USER_IDX, F.array_sort(TRAIN_PRODUCTS).alias(TRAIN_PRODUCTS),
        F.array_sort(HELD_PRODUCTS).alias(HELD_PRODUCTS),
    )  # fmt: skip
    assert_df_equality(in_order, expected, ignore_row_order=True, ignore_nullable=True)


def test_explicit_mode_fits_the_mean_rating_where_events_carry_one(spark) -> None:
    # Pair (1, 10): ratings 4.0 and 5.0; pair (1, 11): no rating, quantity 2 + 1.
    rows = [(1, 10, 1, T0, 4.0), (1, 10, 1, T1, 5.0), (1, 11, 2, T0, None), (1, 11, 1, T1, None)]
    events = spark.createDataFrame(
        rows, "user_idx int, product_idx int, quantity int, event_time timestamp, rating double")

    def ratings(explicit: bool) -> dict[int, float]:
        pairs = aggregate_indexed_pairs(events, explicit_ratings=explicit).collect()
        return {r[PRODUCT_IDX]: r["rating"] for r in pairs}

    assert (ratings(True), ratings(False)) == ({10: 4.5, 11: 3.0}, {10: 2.0, 11: 3.0})
