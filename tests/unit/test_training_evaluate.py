"""Evaluation identities: RMSE of a perfect prediction, hand-computed ranking metrics, the
one-pass evaluation against Spark's own evaluators, verdict."""

from __future__ import annotations

import random

import pytest
from chispa import assert_approx_df_equality
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import functions as F

from spark_app.training.als import build_als, fit_als
from spark_app.training.evaluate import (
    LABEL,
    decide,
    evaluate_lists,
    evaluate_split,
    evaluation_of,
    held_out_lists,
    recommendations_of,
    rmse,
    score_users,
)
from spark_app.training.recommend import (
    bought_lists,
    popular_for_users,
    popular_products,
    recommend_for_users,
    user_vectors,
)
from spark_app.training.split import split_pairs

SPARK_RANKING_METRICS = {
    "precision_at_k": "precisionAtK",
    "recall_at_k": "recallAtK",
    "ndcg_at_k": "ndcgAtK",
    "map_at_k": "meanAveragePrecisionAtK",
}


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


def _random_pairs(spark, users: int = 80, products: int = 30, seed: int = 3):
    """(user_idx, product_idx, rating, purchases) with 2..12 random products per user."""
    rng = random.Random(seed)
    rows = [
        (u, p, float(rng.randint(1, 5)), 1)
        for u in range(users)
        for p in rng.sample(range(products), rng.randint(2, 12))
    ]
    return spark.createDataFrame(
        rows, "user_idx int, product_idx int, rating double, purchases long"
    )


def _reference(model, train, test, *, k, exclude_purchased, implicit_prefs, catalog_size):
    """The same figures the old way: top-k lists, Spark's RankingEvaluator and
    RegressionEvaluator on ALSModel.transform."""
    users = test.select("user_idx").distinct().join(user_vectors(model), "user_idx")
    actual = held_out_lists(test, users).select(
        "user_idx", F.col("actual").cast("array<double>").alias("actual")
    )
    exclude = bought_lists(train) if exclude_purchased else None
    recs = {
        "model": recommend_for_users(model, users, k, exclude=exclude),
        "baseline": popular_for_users(popular_products(train), users, k, exclude=exclude),
    }
    figures = {}
    for name, df in recs.items():
        lists = df.groupBy("user_idx").agg(
            F.transform(
                F.array_sort(F.collect_list(F.struct("rank", "product_idx"))),
                lambda x: x["product_idx"].cast("double"),
            ).alias("predicted")
        )
        table = actual.join(lists, "user_idx", "left").select(
            F.coalesce("predicted", F.array().cast("array<double>")).alias("predicted"), "actual"
        )
        evaluator = RankingEvaluator(predictionCol="predicted", labelCol="actual", k=k)
        figures[name] = {
            ours: evaluator.setMetricName(theirs).evaluate(table)
            for ours, theirs in SPARK_RANKING_METRICS.items()
        }
        products = table.select(F.explode("predicted")).distinct().count()
        figures[name]["coverage"] = products / catalog_size
    label = F.lit(1.0) if implicit_prefs else F.col("rating")
    figures["model"]["rmse"] = rmse(model.transform(test).withColumn(LABEL, label))
    figures["baseline"]["rmse"] = None
    return {"test_users": actual.count(), **figures}


@pytest.mark.parametrize(("exclude_purchased", "implicit_prefs"), [(True, True), (False, False)])
def test_one_pass_evaluation_equals_spark_evaluators(
    spark, exclude_purchased: bool, implicit_prefs: bool
) -> None:
    pairs = _random_pairs(spark).cache()
    train, test = split_pairs(pairs, "random", 0.3, seed=5)
    als = build_als(
        rank=4, max_iter=3, reg_param=0.1, alpha=1.0, implicit_prefs=implicit_prefs, seed=1,
        num_blocks=2,
    )  # fmt: skip
    model = fit_als(train, als)
    options = {
        "k": 5,
        "exclude_purchased": exclude_purchased,
        "implicit_prefs": implicit_prefs,
        "catalog_size": 30,
    }
    ours = evaluate_split(model, train, test, num_chunks=3, strategy="blocked", **options)
    expected = _reference(model, train, test, **options)
    assert ours["test_users"] == expected["test_users"] > 0
    assert expected["model"]["ndcg_at_k"] > 0 and expected["model"]["rmse"] > 0
    assert {"model": ours["model"], "baseline": ours["baseline"]} == {
        name: pytest.approx(expected[name], rel=1e-5, abs=1e-9) for name in ("model", "baseline")
    }


@pytest.mark.parametrize("exclude_purchased", [True, False])
def test_one_pass_gives_the_evaluation_and_the_recommendations(
    spark, exclude_purchased: bool
) -> None:
    # The pipeline's one pass (evaluate + top-N of every user) against the two separate ways.
    pairs = _random_pairs(spark, seed=8).cache()
    train, test = split_pairs(pairs, "random", 0.3, seed=9)
    als = build_als(
        rank=4, max_iter=3, reg_param=0.1, alpha=1.0, implicit_prefs=True, seed=1, num_blocks=2
    )
    model = fit_als(train, als)
    options = {"exclude_purchased": exclude_purchased, "implicit_prefs": True}
    scored = score_users(model, train, test, k=5, top_n=4, num_chunks=4, **options).cache()
    evaluation = evaluate_split(model, train, test, k=5, catalog_size=30, **options)
    exclude = bought_lists(pairs) if exclude_purchased else None
    recs = recommend_for_users(model, user_vectors(model), 4, exclude=exclude, num_chunks=3)
    one_pass = evaluation_of(scored, 30)
    assert {name: one_pass[name] for name in ("test_users", "model", "baseline")} == {
        "test_users": evaluation["test_users"],
        "model": pytest.approx(evaluation["model"], rel=1e-12),
        "baseline": pytest.approx(evaluation["baseline"], rel=1e-12),
    }
    assert_approx_df_equality(
        recommendations_of(scored), recs, 1e-6, ignore_row_order=True, ignore_nullable=True
    )
