"""Evaluation identities: RMSE of a perfect prediction, hand-computed ranking metrics, verdict."""

from __future__ import annotations

import pytest

from spark_app.training.evaluate import decide, evaluate_lists, rmse


def test_perfect_prediction_has_rmse_zero(spark) -> None:
    df = spark.createDataFrame(
        [(1.0, 1.0), (0.5, 0.5), (3.0, 3.0)], "label double, prediction double"
    )
    assert rmse(df) == 0.0


def test_rmse_is_none_without_predictions(spark) -> None:
    df = spark.createDataFrame([(1.0, None)], "label double, prediction double")
    assert rmse(df) is None


def test_ranking_metrics_equal_hand_computed_values(spark) -> None:
    # k = 3. Per user (predicted best first | held out):
    # 1: [1, 2, 3] | {1, 3}: P 2/3, R 1, AP (1/1 + 2/3) / 2 = 0.83333,
    #    NDCG (1 + 1/log2 4) / (1 + 1/log2 3) = 1.5 / 1.63093 = 0.91972
    # 2: [4, 5, 6] | {7}: all 0
    # 3: [8, 9, 10] | {10, 11, 12, 13}: P 1/3, R 1/4, AP (1/3) / min(4, 3) = 0.11111,
    #    NDCG 0.5 / (1 + 0.63093 + 0.5) = 0.23464
    # 4: [14] | {14}: P 1/3 (divided by k), R 1, AP 1, NDCG 1
    # 5: no recommendation | {15}: all 0
    # coverage: 10 distinct recommended products / catalog of 20 = 0.5
    recs = spark.createDataFrame(
        [
            (1, 1, 1), (1, 2, 2), (1, 3, 3), (1, 99, 4),
            (2, 4, 1), (2, 5, 2), (2, 6, 3),
            (3, 8, 1), (3, 9, 2), (3, 10, 3),
            (4, 14, 1),
        ],
        "user_idx int, product_idx int, rank int",
    )  # fmt: skip
    actual = spark.createDataFrame(
        [(1, [1.0, 3.0]), (2, [7.0]), (3, [10.0, 11.0, 12.0, 13.0]), (4, [14.0]), (5, [15.0])],
        "user_idx int, actual array<double>",
    )
    expected = {
        "precision_at_k": (2 / 3 + 0 + 1 / 3 + 1 / 3 + 0) / 5,
        "recall_at_k": (1 + 0 + 0.25 + 1 + 0) / 5,
        "ndcg_at_k": (0.919721 + 0 + 0.234639 + 1 + 0) / 5,
        "map_at_k": (0.833333 + 0 + 0.111111 + 1 + 0) / 5,
        "coverage": 0.5,
    }
    assert evaluate_lists(recs, actual, 3, catalog_size=20) == pytest.approx(expected, abs=1e-5)


def test_model_below_baseline_minus_margin_is_rejected() -> None:
    accepted, _ = decide({"ndcg_at_k": 0.089}, {"ndcg_at_k": 0.1}, "ndcg_at_k", 0.1)
    assert accepted is False


def test_model_within_margin_is_accepted() -> None:
    accepted, _ = decide({"ndcg_at_k": 0.091}, {"ndcg_at_k": 0.1}, "ndcg_at_k", 0.1)
    assert accepted is True


def test_missing_metric_is_rejected() -> None:
    accepted, _ = decide({"ndcg_at_k": None}, {"ndcg_at_k": None}, "ndcg_at_k", 0.0)
    assert accepted is False
