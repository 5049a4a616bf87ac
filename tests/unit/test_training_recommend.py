"""Recommend: exact exclusion of bought products by the scorer, the popular lists."""

from __future__ import annotations

from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys_contract.runs import QUANTITY_TOTAL
from spark_app.schema import PRODUCT_IDX, PURCHASES
from spark_app.training.recommend import rank_popular
from spark_app.training.scoring import recommendations_of, score_users
from spark_app.training.split import HELD_OUT, product_sides, split_flagged, training_side
from tests.training_oracles import popular_top_n

RECS = "user_idx int, product_idx int, score float, rank int"
LISTS = ("user_idx int, train_products array<int>, "
         "held_products array<struct<product_idx int, label double>>")


def _recommend(spark, users, items, lists, n):
    popular = spark.createDataFrame([(1, 10)], "rank int, product_idx int")
    scored = score_users(users, items, spark.createDataFrame(lists, LISTS), popular, k=2,
                         top_n=n, exclude_purchased=True, num_chunks=2)
    return recommendations_of(scored)


def test_top_n_leaves_out_bought_products(spark) -> None:
    users = spark.createDataFrame(
        [(1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [1.0, 1.0])], "user_idx int, features array<float>"
    )
    items = spark.createDataFrame(
        [(10, [3.0, 0.0]), (11, [2.0, 0.0]), (12, [0.0, 5.0]), (13, [1.0, 1.5])],
        "product_idx int, features array<float>",
    )
    # User 1 bought 10 (training side), user 3 bought 12 and held-out 10; user 2 nothing.
    lists = [(1, [10], []), (2, [], []), (3, [12], [(10, 1.0)])]
    expected = spark.createDataFrame(
        [
            (1, 11, 2.0, 1), (1, 13, 1.0, 2),
            (2, 12, 5.0, 1), (2, 13, 1.5, 2),
            (3, 13, 2.5, 1), (3, 11, 2.0, 2),
        ],
        RECS,
    )  # fmt: skip
    assert_approx_df_equality(_recommend(spark, users, items, lists, 2), expected, 1e-6,
                              ignore_row_order=True, ignore_nullable=True)


def test_user_who_bought_nearly_everything_gets_what_is_left(spark) -> None:
    users = spark.createDataFrame([(1, [1.0])], "user_idx int, features array<float>")
    items = spark.createDataFrame(
        [(10, [3.0]), (11, [2.0]), (12, [1.0])], "product_idx int, features array<float>"
    )
    expected = spark.createDataFrame([(1, 11, 2.0, 1)], RECS)
    assert_approx_df_equality(_recommend(spark, users, items, [(1, [10, 12], [])], 2), expected,
                              1e-6, ignore_row_order=True, ignore_nullable=True)


def test_popular_list_ranks_by_purchases_then_quantity(spark) -> None:
    totals = spark.createDataFrame(
        [(10, 2, 6), (11, 2, 9), (12, 1, 3)], "product_idx int, purchases long, quantity long"
    )
    expected = spark.createDataFrame(
        [(1, 11, 2, 9), (2, 10, 2, 6), (3, 12, 1, 3)],
        "rank int, product_idx int, purchases long, quantity long",
    )
    assert_df_equality(rank_popular(totals), expected, ignore_row_order=True,
                       ignore_nullable=True)


def test_rank_popular_keeps_the_first_n(spark) -> None:
    totals = spark.createDataFrame(
        [(10, 2, 6), (11, 2, 9), (12, 1, 3)], "product_idx int, purchases long, quantity long"
    )
    expected = spark.createDataFrame(
        [(1, 11, 2, 9), (2, 10, 2, 6)], "rank int, product_idx int, purchases long, quantity long"
    )
    assert_df_equality(
        rank_popular(totals, 2), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_product_sides_give_both_popular_lists(spark) -> None:
    # Product 13 is bought only in held-out pairs: it is in the published list, not in the
    # baseline's (training side).
    flagged = spark.createDataFrame(
        [
            (1, 10, 1.0, 1, False), (2, 10, 5.0, 1, True), (1, 11, 9.0, 2, False),
            (3, 12, 2.0, 1, False), (2, 12, 1.0, 1, False), (3, 13, 4.0, 3, True),
            (1, 12, 2.0, 1, True),
        ],
        f"user_idx int, product_idx int, rating double, purchases long, {HELD_OUT} boolean",
    )  # fmt: skip
    train, _ = split_flagged(flagged)
    sides = product_sides(flagged)
    everything = rank_popular(sides.select(PRODUCT_IDX, PURCHASES, QUANTITY_TOTAL))
    users = spark.createDataFrame([(0,)], "user_idx int")
    as_lists = [
        popular_top_n(pairs, users, 10).select(F.col("rank"), PRODUCT_IDX)
        for pairs in (flagged.drop(HELD_OUT), train)
    ]
    assert_df_equality(everything.select("rank", PRODUCT_IDX), as_lists[0],
                       ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(rank_popular(training_side(sides)).select("rank", PRODUCT_IDX),
                       as_lists[1], ignore_row_order=True, ignore_nullable=True)
    assert everything.where(F.col(PRODUCT_IDX) == 13).count() == 1
