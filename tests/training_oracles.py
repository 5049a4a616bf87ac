"""Reference implementations the tests compare the job's code with: plain Spark SQL (or
Spark's own evaluators) on tiny data, written the obvious way, never used by the job."""

from __future__ import annotations

from pyspark.errors import IllegalArgumentException
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import LongType

from spark_app.schema import EDGE_DST, EDGE_SRC, PRODUCT_IDX, USER_IDX, VERTEX_ID
from spark_app.training.graph import (
    _INFLOW,
    GRAPH_VERTEX_SCHEMA,
    IN_DEGREE,
    OUT_DEGREE,
    PAGERANK,
    _conform,
    concentration_of,
    in_degree_histogram,
    inflow_sum,
)


def rmse(predictions: DataFrame, label_col: str = "label",
         prediction_col: str = "prediction") -> float | None:
    """Spark's RegressionEvaluator RMSE of the non-NaN predictions; None when there are none."""
    scored = predictions.where(F.col(prediction_col).isNotNull() & ~F.isnan(prediction_col))
    evaluator = RegressionEvaluator(metricName="rmse", labelCol=label_col,
                                    predictionCol=prediction_col)
    try:
        value = float(evaluator.evaluate(scored))
    except IllegalArgumentException:  # Spark's summarizer refuses an empty input
        return None
    return None if value != value else value


def held_out_lists(test: DataFrame, users: DataFrame) -> DataFrame:
    """(user_idx, actual array<int>) of the held-out products of each user in `users`."""
    return (
        test.join(users.select(USER_IDX).distinct(), USER_IDX)
        .groupBy(USER_IDX)
        .agg(F.collect_set(F.col(PRODUCT_IDX).cast("int")).alias("actual"))
    )


def _first_n(candidates: DataFrame, n: int, exclude: DataFrame | None) -> DataFrame:
    """(user_idx, product_idx, score, rank) of each user's n best candidates not excluded,
    ties by product index."""
    if exclude is not None:
        candidates = candidates.join(exclude.select(USER_IDX, PRODUCT_IDX),
                                     [USER_IDX, PRODUCT_IDX], "left_anti")
    order = Window.partitionBy(USER_IDX).orderBy(F.col("score").desc(), F.col(PRODUCT_IDX))
    ranked = candidates.withColumn("rank", F.row_number().over(order))
    return ranked.where(F.col("rank") <= n).select(
        USER_IDX, PRODUCT_IDX, F.col("score").cast("float").alias("score"), "rank")


def top_n(users: DataFrame, items: DataFrame, n: int,
          exclude: DataFrame | None = None) -> DataFrame:
    """Every user (user_idx, features) against every item (product_idx, features): the top n
    by dot product, bought (user_idx, product_idx) pairs of `exclude` left out."""
    pairs = users.select(USER_IDX, F.col("features").alias("_u")).crossJoin(
        items.select(PRODUCT_IDX, F.col("features").alias("_i")))
    dot = F.aggregate(F.zip_with("_u", "_i", lambda a, b: a * b), F.lit(0.0).cast("float"),
                      lambda acc, x: acc + x)
    return _first_n(pairs.select(USER_IDX, PRODUCT_IDX, dot.alias("score")), n, exclude)


def popular_top_n(train: DataFrame, users: DataFrame, n: int,
                  exclude: DataFrame | None = None) -> DataFrame:
    """The baseline: the training pairs' products by purchases, then quantity, then index, for
    every user, bought pairs of `exclude` left out; score = -popularity rank."""
    totals = train.groupBy(PRODUCT_IDX).agg(F.sum("purchases").alias("_p"),
                                            F.sum("rating").alias("_q"))
    order = Window.orderBy(F.col("_p").desc(), F.col("_q").desc(), F.col(PRODUCT_IDX))
    ranked = totals.select(PRODUCT_IDX, (-F.row_number().over(order)).alias("score"))
    return _first_n(users.select(USER_IDX).distinct().crossJoin(ranked), n, exclude)


# --- the graph's figures from the string vertex and edge tables --------------------------------

def degrees(vertices: DataFrame, edges: DataFrame) -> DataFrame:
    """(id, in_degree, out_degree) of every vertex; 0 where it has no edge."""
    ins = edges.groupBy(F.col(EDGE_DST).alias(VERTEX_ID)).agg(F.count(F.lit(1)).alias(IN_DEGREE))
    outs = edges.groupBy(F.col(EDGE_SRC).alias(VERTEX_ID)).agg(F.count(F.lit(1)).alias(OUT_DEGREE))
    return (
        vertices.select(VERTEX_ID)
        .join(ins, VERTEX_ID, "left")
        .join(outs, VERTEX_ID, "left")
        .select(
            VERTEX_ID,
            F.coalesce(F.col(IN_DEGREE), F.lit(0)).cast(LongType()).alias(IN_DEGREE),
            F.coalesce(F.col(OUT_DEGREE), F.lit(0)).cast(LongType()).alias(OUT_DEGREE),
        )
    )


def pagerank_dataframe(
    vertices: DataFrame, edges: DataFrame, reset_probability: float
) -> DataFrame:
    """(id, pagerank) of a two-layer graph, exactly; ranks sum to 1.

    Valid when no vertex has both in- and out-edges, as in the recommendation graph (edges go
    from users, which have no in-edges, to products, which have no out-edges). PageRank as
    networkx.pagerank defines it (mass of vertices without out-edges spread evenly) then has a
    closed form, with d = 1 - reset, N vertices and S sources (vertices with out-edges):
    every vertex without in-edges has rank c = 1 / (N + d * S), and a vertex v with in-edges
    c * (1 + d * sum over its in-edges u -> v of 1 / outdeg(u)). One aggregation, no iterations.
    Derivation: docs/training.md, "Graph".
    """
    return _with_figures(vertices, edges, reset_probability).select(VERTEX_ID, PAGERANK)


def graph_dataframe(vertices: DataFrame, edges: DataFrame, reset_probability: float) -> DataFrame:
    """Vertices with in/out degree and PageRank (see pagerank_dataframe), by plain DataFrame
    operations: one pass over the edges, no iterations."""
    return _conform(_with_figures(vertices, edges, reset_probability), GRAPH_VERTEX_SCHEMA)


def _with_figures(vertices: DataFrame, edges: DataFrame, reset_probability: float) -> DataFrame:
    """`vertices` plus in_degree, out_degree and the closed-form PageRank."""
    d = 1.0 - reset_probability
    outs = edges.groupBy(F.col(EDGE_SRC).alias(VERTEX_ID)).agg(F.count(F.lit(1)).alias(OUT_DEGREE))
    ins = (
        edges.select(EDGE_SRC, EDGE_DST)
        .join(outs.withColumnRenamed(VERTEX_ID, EDGE_SRC), EDGE_SRC)
        .groupBy(F.col(EDGE_DST).alias(VERTEX_ID))
        .agg(
            F.count(F.lit(1)).alias(IN_DEGREE),
            inflow_sum(F.col(OUT_DEGREE)).alias(_INFLOW),
        )
    )
    totals = vertices.agg(F.count(F.lit(1)).alias("_n")).crossJoin(
        outs.agg(F.count(F.lit(1)).alias("_sources"))
    )
    base = F.lit(1.0) / (F.col("_n") + F.lit(d) * F.col("_sources"))
    return (
        vertices.join(ins, VERTEX_ID, "left")
        .join(outs, VERTEX_ID, "left")
        .crossJoin(F.broadcast(totals))
        .select(
            *vertices.columns,
            F.coalesce(F.col(IN_DEGREE), F.lit(0)).cast(LongType()).alias(IN_DEGREE),
            F.coalesce(F.col(OUT_DEGREE), F.lit(0)).cast(LongType()).alias(OUT_DEGREE),
            (base * (F.lit(1.0) + F.lit(d) * F.coalesce(F.col(_INFLOW), F.lit(0.0)))).alias(
                PAGERANK
            ),
        )
    )


def concentration(graph: DataFrame) -> dict[str, float | int | None]:
    """Edge share of the top 1% of products and Gini of product in-degree (whole catalog)."""
    return concentration_of(in_degree_histogram(graph))
