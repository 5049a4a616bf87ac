"""Evaluation: the scorer's one pass against Spark's own evaluators and plain-SQL top-N lists,
RMSE of a perfect prediction, the verdict, and no gain claimed on data without structure."""

from __future__ import annotations

import random

import pytest
from chispa import assert_approx_df_equality
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import functions as F

from spark_app.training.als import build_als, fit_als
from spark_app.training.evaluate import decide, held_label
from spark_app.training.recommend import rank_popular
from spark_app.training.scoring import (
    evaluation_of,
    item_vectors,
    recommendations_of,
    score_users,
    user_vectors,
)
from spark_app.training.split import (
    HELD_OUT,
    flag_held_out,
    product_sides,
    side_lists,
    split_flagged,
    training_side,
)
from tests.training_oracles import held_out_lists, popular_top_n, rmse, top_n

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


def _scored(spark, *, seed: int, implicit_prefs: bool, exclude_purchased: bool, k: int,
            top_n: int):
    """(model, train, test, pairs, scored rows) of a small fitted model on random pairs."""
    pairs = _random_pairs(spark, seed=seed).cache()
    flagged = flag_held_out(pairs, "random", 0.3, seed + 1).cache()
    train, test = split_flagged(flagged)
    als = build_als(rank=4, max_iter=3, reg_param=0.1, alpha=1.0,
                    implicit_prefs=implicit_prefs, seed=1, num_blocks=2)
    model = fit_als(train, als)
    scored = score_users(
        user_vectors(model), item_vectors(model), side_lists(flagged, held_label(implicit_prefs)),
        rank_popular(training_side(product_sides(flagged))), k=k, top_n=top_n,
        exclude_purchased=exclude_purchased, num_chunks=3,
    ).cache()
    return model, train, test, flagged.drop(HELD_OUT), scored


def _reference(model, train, test, *, k, exclude_purchased, implicit_prefs, catalog_size):
    """The same figures the obvious way: top-k lists by plain SQL, Spark's RankingEvaluator,
    and RegressionEvaluator on ALSModel.transform."""
    users = test.select("user_idx").distinct().join(user_vectors(model), "user_idx")
    actual = held_out_lists(test, users).select(
        "user_idx", F.col("actual").cast("array<double>").alias("actual")
    )
    exclude = train if exclude_purchased else None
    recs = {
        "model": top_n(users, item_vectors(model), k, exclude),
        "baseline": popular_top_n(train, users, k, exclude),
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
    figures["model"]["rmse"] = rmse(model.transform(test).withColumn("label", label))
    figures["baseline"]["rmse"] = None
    return {"test_users": actual.count(), **figures}


@pytest.mark.parametrize(("exclude_purchased", "implicit_prefs"), [(True, True), (False, False)])
def test_one_pass_evaluation_equals_spark_evaluators(
    spark, exclude_purchased: bool, implicit_prefs: bool
) -> None:
    model, train, test, _, scored = _scored(spark, seed=3, implicit_prefs=implicit_prefs,
                                            exclude_purchased=exclude_purchased, k=5, top_n=0)
    ours = evaluation_of(scored, 30)
    expected = _reference(model, train, test, k=5, exclude_purchased=exclude_purchased,
                          implicit_prefs=implicit_prefs, catalog_size=30)
    assert ours.test_users == expected["test_users"] > 0
    assert expected["model"]["ndcg_at_k"] > 0 and expected["model"]["rmse"] > 0
    assert {"model": ours.model, "baseline": ours.baseline} == {
        name: pytest.approx(expected[name], rel=1e-5, abs=1e-9) for name in ("model", "baseline")
    }


@pytest.mark.parametrize("exclude_purchased", [True, False])
def test_one_pass_gives_the_evaluation_and_the_recommendations(
    spark, exclude_purchased: bool
) -> None:
    # The pipeline's one pass (evaluate + top-N of every user) against the evaluation alone and
    # against plain-SQL top-N lists without what each user bought (both sides of the split).
    model, _, _, pairs, scored = _scored(spark, seed=8, implicit_prefs=True,
                                         exclude_purchased=exclude_purchased, k=5, top_n=4)
    _, _, _, _, evaluated = _scored(spark, seed=8, implicit_prefs=True,
                                    exclude_purchased=exclude_purchased, k=5, top_n=0)
    expected = top_n(user_vectors(model), item_vectors(model), 4,
                     pairs if exclude_purchased else None)
    one_pass, alone = evaluation_of(scored, 30), evaluation_of(evaluated, 30)
    assert (one_pass.test_users, one_pass.model, one_pass.baseline) == (
        alone.test_users, pytest.approx(alone.model, rel=1e-12),
        pytest.approx(alone.baseline, rel=1e-12))
    assert_approx_df_equality(
        recommendations_of(scored), expected, 1e-5, ignore_row_order=True, ignore_nullable=True
    )
