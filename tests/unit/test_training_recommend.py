"""Recommend: exact exclusion of bought products, the same exclusion for the baseline."""

from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from spark_app.schema import PRODUCT_IDX, PURCHASES
from spark_app.training.recommend import (
    QUANTITY_TOTAL,
    numpy_kernels,
    popular_for_users,
    popular_products,
    product_sides,
    rank_popular,
    top_n_blocked,
    training_side,
)
from spark_app.training.split import HELD_OUT, split_flagged

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
    assert_df_equality(
        everything, popular_products(flagged.drop(HELD_OUT)), ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip
    assert_df_equality(
        rank_popular(training_side(sides)), popular_products(train), ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip
    assert everything.where(F.col(PRODUCT_IDX) == 13).count() == 1


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


def test_top_k_kernel_equals_a_full_sort_with_ties_and_masked_scores() -> None:
    # Wide enough for the grouped bound (TOP_K_GROUPS column groups), with ties (scores rounded
    # to a coarse grid) and rows with fewer than k scores left (the rest masked as -inf).
    import numpy as np

    from spark_app.training.recommend import TOP_K_GROUPS, numpy_kernels

    rng = np.random.default_rng(5)
    n_rows, n_cols, k = 60, TOP_K_GROUPS * 3 + 7, 12
    scores = np.round(rng.standard_normal((n_rows, n_cols)), 1).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0, 5:] = -np.inf  # 5 scores left
    scores[1, :] = 2.0  # all tied
    expected_cols = np.full((n_rows, k), -1)
    for row in range(n_rows):
        finite = np.flatnonzero(np.isfinite(scores[row]))
        ordered = finite[np.lexsort((finite, -scores[row, finite]))][:k]
        expected_cols[row, : len(ordered)] = ordered
    top_cols, top_scores = numpy_kernels().top_k(scores.copy(), k)
    expected_scores = np.where(
        expected_cols >= 0, scores[np.arange(n_rows)[:, None], expected_cols], -np.inf
    )
    assert (top_cols.tolist(), top_scores.tolist()) == (
        expected_cols.tolist(),
        expected_scores.tolist(),
    )


@pytest.mark.parametrize(("n_cols", "k"), [(600, 5), (1000, 20), (300, 3), (40, 10)])
def test_top_k_equals_a_full_sort(n_cols: int, k: int) -> None:
    # Ties (equal columns), bought products (-inf) and a row with fewer than k finite scores.
    rng = np.random.default_rng(n_cols + k)
    scores = rng.standard_normal((50, n_cols)).astype(np.float32)
    scores[:, 7] = scores[:, 3]
    scores[rng.integers(0, 50, 400), rng.integers(0, n_cols, 400)] = -np.inf
    scores[0, 2:] = -np.inf
    cols, vals = numpy_kernels().top_k(scores, k)
    for row in range(len(scores)):
        order = [
            c for c in np.lexsort((np.arange(n_cols), -scores[row])) if scores[row, c] > -np.inf
        ]
        expected = order[:k] + [-1] * (k - len(order[:k]))
        assert cols[row].tolist() == expected
        assert vals[row].tolist() == [scores[row, c] if c >= 0 else -np.inf for c in expected]
