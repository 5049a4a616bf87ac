"""Recommend: exact exclusion of bought products, the same exclusion for the baseline."""

from __future__ import annotations

from chispa import assert_approx_df_equality, assert_df_equality

from spark_app.training.recommend import popular_for_users, popular_products, top_n_blocked

RECS = "user_idx int, product_idx int, score float, rank int"


def test_top_n_leaves_out_bought_products(spark) -> None:
    users = spark.createDataFrame(
        [(1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [1.0, 1.0])], "user_idx int, features array<float>"
    )
    items = spark.createDataFrame(
        [(10, [3.0, 0.0]), (11, [2.0, 0.0]), (12, [0.0, 5.0]), (13, [1.0, 1.5])],
        "product_idx int, features array<float>",
    )
    bought = spark.createDataFrame([(1, 10), (3, 12), (3, 10)], "user_idx int, product_idx int")
    expected = spark.createDataFrame(
        [
            (1, 11, 2.0, 1), (1, 13, 1.0, 2),
            (2, 12, 5.0, 1), (2, 13, 1.5, 2),
            (3, 13, 2.5, 1), (3, 11, 2.0, 2),
        ],
        RECS,
    )  # fmt: skip
    result = top_n_blocked(users, items, 2, exclude=bought, num_chunks=2)
    assert_approx_df_equality(result, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


def test_user_who_bought_nearly_everything_gets_what_is_left(spark) -> None:
    users = spark.createDataFrame([(1, [1.0])], "user_idx int, features array<float>")
    items = spark.createDataFrame(
        [(10, [3.0]), (11, [2.0]), (12, [1.0])], "product_idx int, features array<float>"
    )
    bought = spark.createDataFrame([(1, 10), (1, 12)], "user_idx int, product_idx int")
    expected = spark.createDataFrame([(1, 11, 2.0, 1)], RECS)
    result = top_n_blocked(users, items, 2, exclude=bought)
    assert_approx_df_equality(result, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


def test_popular_list_ranks_by_purchases_then_quantity(spark) -> None:
    pairs = spark.createDataFrame(
        [(1, 10, 1.0, 1), (2, 10, 5.0, 1), (1, 11, 9.0, 2), (3, 12, 2.0, 1), (2, 12, 1.0, 1)],
        "user_idx int, product_idx int, rating double, purchases long",
    )
    expected = spark.createDataFrame(
        [(1, 11, 2, 9), (2, 10, 2, 6), (3, 12, 2, 3)],
        "rank int, product_idx int, purchases long, quantity long",
    )
    assert_df_equality(
        popular_products(pairs), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_baseline_skips_what_each_user_bought(spark) -> None:
    popular = spark.createDataFrame(
        [(1, 10), (2, 11), (3, 12), (4, 13)], "rank int, product_idx int"
    )
    users = spark.createDataFrame([(1,), (2,)], "user_idx int")
    bought = spark.createDataFrame([(1, 10), (1, 12), (2, 13)], "user_idx int, product_idx int")
    expected = spark.createDataFrame(
        [(1, 11, 1), (1, 13, 2), (2, 10, 1), (2, 11, 2)], "user_idx int, product_idx int, rank int"
    )
    result = popular_for_users(popular, users, 2, exclude=bought).drop("score")
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)
