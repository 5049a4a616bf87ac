"""Graph: the recommendation graph (users -> recommended products) and its figures.

Vertices are every user and every product of the training set (`u:<id>`, `p:<id>`, so a user
and a product never share an id); edges are the top-N recommendations (score, rank).
Per vertex: in-degree, out-degree and PageRank, computed by one of two engines with the same
output schema:

- `graphframes`: GraphFrame.inDegrees / outDegrees / pageRank (needs GraphFrames' JVM jar);
  its PageRank is rescaled to sum to 1.
- `dataframe`: plain DataFrame operations; PageRank by a fixed number of power iterations
  with the mass of dangling vertices (no out-edges) spread evenly over all vertices, the
  definition networkx.pagerank uses.

Concentration: the share of edges that point at the top 1% of the catalog's products (at least
one product), and the Gini coefficient of product in-degree over the whole catalog (products
never recommended count as 0).
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from spark_app.schema import (
    EDGE_DST,
    EDGE_SRC,
    PRODUCT_ID,
    PRODUCT_TYPE,
    PRODUCT_VERTEX_PREFIX,
    RANK,
    SCORE,
    USER_ID,
    USER_TYPE,
    USER_VERTEX_PREFIX,
    VERTEX_ID,
    VERTEX_LABEL,
    VERTEX_TYPE,
)
from spark_app.session import graphframes_jar_loaded
from spark_app.training.prepare import require_columns, whole_table_window

log = logging.getLogger(__name__)

IN_DEGREE = "in_degree"
OUT_DEGREE = "out_degree"
PAGERANK = "pagerank"
ENGINES = ("auto", "graphframes", "dataframe")
TOP_SHARE_FRACTION = 0.01  # "top 1% of products" in the concentration figure
# Up to this many vertices the dataframe PageRank broadcasts the rank table to every task
# (about 24 bytes a vertex) instead of shuffling the edges in every iteration.
PAGERANK_BROADCAST_MAX_VERTICES = 2_000_000

VERTEX_SCHEMA = StructType(
    [
        StructField(VERTEX_ID, StringType(), False),
        StructField(VERTEX_TYPE, StringType(), False),
        StructField(VERTEX_LABEL, StringType(), False),
    ]
)
EDGE_SCHEMA = StructType(
    [
        StructField(EDGE_SRC, StringType(), False),
        StructField(EDGE_DST, StringType(), False),
        StructField(SCORE, DoubleType(), True),
        StructField(RANK, IntegerType(), False),
    ]
)
# What both engines return: vertices.csv's columns.
GRAPH_VERTEX_SCHEMA = StructType(
    [
        *VERTEX_SCHEMA.fields,
        StructField(IN_DEGREE, LongType(), False),
        StructField(OUT_DEGREE, LongType(), False),
        StructField(PAGERANK, DoubleType(), False),
    ]
)


def _conform(df: DataFrame, schema: StructType) -> DataFrame:
    """Select and cast `df` to `schema`'s columns (nullability is Spark's to decide)."""
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def user_vertex_col(raw: str) -> F.Column:
    """Column form of spark_app.schema.user_vertex_id."""
    return F.concat(F.lit(USER_VERTEX_PREFIX), F.col(raw).cast("string"))


def product_vertex_col(raw: str) -> F.Column:
    """Column form of spark_app.schema.product_vertex_id."""
    return F.concat(F.lit(PRODUCT_VERTEX_PREFIX), F.col(raw).cast("string"))


def build_vertices(users: DataFrame, products: DataFrame) -> DataFrame:
    """(id, type, label) for every user (user_id column) and product (product_id column)."""
    require_columns(users, (USER_ID,), "build_vertices users")
    require_columns(products, (PRODUCT_ID,), "build_vertices products")
    user_v = users.select(
        user_vertex_col(USER_ID).alias(VERTEX_ID),
        F.lit(USER_TYPE).alias(VERTEX_TYPE),
        F.col(USER_ID).alias(VERTEX_LABEL),
    )
    product_v = products.select(
        product_vertex_col(PRODUCT_ID).alias(VERTEX_ID),
        F.lit(PRODUCT_TYPE).alias(VERTEX_TYPE),
        F.col(PRODUCT_ID).alias(VERTEX_LABEL),
    )
    return _conform(user_v.unionByName(product_v).distinct(), VERTEX_SCHEMA)


def build_edges(recs: DataFrame) -> DataFrame:
    """(src, dst, score, rank) from (user_id, product_id, score, rank) recommendations."""
    require_columns(recs, (USER_ID, PRODUCT_ID, SCORE, RANK), "build_edges")
    return _conform(
        recs.select(
            user_vertex_col(USER_ID).alias(EDGE_SRC),
            product_vertex_col(PRODUCT_ID).alias(EDGE_DST),
            SCORE,
            RANK,
        ),
        EDGE_SCHEMA,
    )


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
    vertices: DataFrame, edges: DataFrame, iterations: int, reset_probability: float
) -> DataFrame:
    """(id, pagerank) by `iterations` power iterations; ranks sum to 1.

    r' = (1 - d) / N + d * (sum over in-edges r(src) / outdeg(src) + D / N), d = 1 - reset,
    D = rank held by vertices without out-edges. The iterations run on integer vertex numbers
    (ids are mapped once, back at the end); D is joined in as a one-row table; each iteration
    is one Spark job, checkpointed locally so the plan does not grow.
    """
    d = 1.0 - reset_probability
    numbered = vertices.select(VERTEX_ID).withColumn("_v", F.monotonically_increasing_id())
    numbered = numbered.localCheckpoint(eager=True)
    n = numbered.count()
    if n == 0:
        return vertices.select(VERTEX_ID, F.lit(0.0).alias(PAGERANK))
    small = n <= PAGERANK_BROADCAST_MAX_VERTICES
    src_no = numbered.select(F.col(VERTEX_ID).alias(EDGE_SRC), F.col("_v").alias("_s"))
    dst_no = numbered.select(F.col(VERTEX_ID).alias(EDGE_DST), F.col("_v").alias("_d"))
    links = edges.select(EDGE_SRC, EDGE_DST).join(src_no, EDGE_SRC).join(dst_no, EDGE_DST)
    outs = links.groupBy("_s").agg((1.0 / F.count(F.lit(1))).alias("_w"))
    weighted = links.select("_s", "_d").join(outs, "_s").localCheckpoint(eager=True)
    flags = (
        numbered.select("_v")
        .join(outs.select(F.col("_s").alias("_v"), F.lit(False).alias("_out")), "_v", "left")
        .select("_v", F.col("_out").isNull().alias("_dangling"))
        .localCheckpoint(eager=True)
    )
    ranks = flags.select("_v", "_dangling", F.lit(1.0 / n).alias(PAGERANK))
    for _ in range(iterations):
        dangling = ranks.where("_dangling").agg(
            F.coalesce(F.sum(PAGERANK), F.lit(0.0)).alias("_dm")
        )
        source_ranks = ranks.select(F.col("_v").alias("_s"), PAGERANK)
        if small:
            source_ranks = F.broadcast(source_ranks)
        contrib = (
            weighted.join(source_ranks, "_s")
            .groupBy(F.col("_d").alias("_v"))
            .agg(F.sum(F.col(PAGERANK) * F.col("_w")).alias("_c"))
        )
        rank = F.lit((1.0 - d) / n) + F.lit(d) * (
            F.coalesce(F.col("_c"), F.lit(0.0)) + F.col("_dm") / F.lit(n)
        )
        ranks = (
            flags.join(F.broadcast(contrib) if small else contrib, "_v", "left")
            .crossJoin(F.broadcast(dangling))
            .select("_v", "_dangling", rank.alias(PAGERANK))
            .localCheckpoint(eager=True)
        )
    return numbered.join(ranks, "_v").select(VERTEX_ID, PAGERANK)


def graph_dataframe(
    vertices: DataFrame, edges: DataFrame, iterations: int, reset_probability: float
) -> DataFrame:
    """Vertices with in/out degree and PageRank, by plain DataFrame operations."""
    figures = degrees(vertices, edges).join(
        pagerank_dataframe(vertices, edges, iterations, reset_probability), VERTEX_ID
    )
    return _conform(vertices.join(figures, VERTEX_ID), GRAPH_VERTEX_SCHEMA)


def graph_graphframes(
    vertices: DataFrame, edges: DataFrame, iterations: int, reset_probability: float
) -> DataFrame:
    """Vertices with in/out degree and PageRank, by GraphFrames (needs its JVM jar)."""
    from graphframes import GraphFrame

    g = GraphFrame(vertices, edges)
    ranked = g.pageRank(resetProbability=reset_probability, maxIter=iterations).vertices
    total = ranked.agg(F.sum(PAGERANK)).first()[0] or 1.0
    figures = (
        vertices.select(VERTEX_ID)
        .join(g.inDegrees.withColumnRenamed("inDegree", IN_DEGREE), VERTEX_ID, "left")
        .join(g.outDegrees.withColumnRenamed("outDegree", OUT_DEGREE), VERTEX_ID, "left")
        .join(ranked.select(VERTEX_ID, (F.col(PAGERANK) / total).alias(PAGERANK)), VERTEX_ID)
        .fillna(0, subset=[IN_DEGREE, OUT_DEGREE])
    )
    return _conform(vertices.join(figures, VERTEX_ID), GRAPH_VERTEX_SCHEMA)


def choose_engine(requested: str, jar_loaded: bool) -> str:
    """The engine to use: `auto` picks graphframes when its jar is loaded, else dataframe."""
    if requested not in ENGINES:
        raise ValueError(f"unknown graph engine {requested!r}; expected one of {ENGINES}")
    if requested == "auto":
        return "graphframes" if jar_loaded else "dataframe"
    if requested == "graphframes" and not jar_loaded:
        raise ValueError(
            "graph.engine is 'graphframes' but GraphFrames' jar is not loaded in this session; "
            "set graph.engine to 'auto' or 'dataframe', or add the jar (see scripts/setup)"
        )
    return requested


def graph_figures(
    spark: SparkSession,
    vertices: DataFrame,
    edges: DataFrame,
    *,
    engine: str,
    iterations: int,
    reset_probability: float,
) -> tuple[DataFrame, str]:
    """(vertex table with degrees and PageRank, engine used)."""
    used = choose_engine(engine, graphframes_jar_loaded(spark))
    log.info("graph engine: %s (requested %s)", used, engine)
    build = graph_graphframes if used == "graphframes" else graph_dataframe
    return build(vertices, edges, iterations, reset_probability), used


def concentration(graph: DataFrame) -> dict[str, float | int | None]:
    """Edge share of the top 1% of products and Gini of product in-degree (whole catalog)."""
    products = graph.where(F.col(VERTEX_TYPE) == PRODUCT_TYPE).select(IN_DEGREE)
    totals = products.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(IN_DEGREE).alias("edges"),
        F.sum((F.col(IN_DEGREE) > 0).cast("long")).alias("recommended"),
    ).first()
    n, edges, recommended = (
        int(totals["n"]),
        int(totals["edges"] or 0),
        int(totals["recommended"] or 0),
    )
    if n == 0 or edges == 0:
        return {
            "products_recommended": recommended,
            "top1pct_edge_share": None,
            "gini_in_degree": None,
        }
    top = max(1, int(n * TOP_SHARE_FRACTION))
    top_edges = products.orderBy(F.col(IN_DEGREE).desc()).limit(top).agg(F.sum(IN_DEGREE))
    share = int(top_edges.first()[0]) / edges
    # Gini = 2 * sum(i * x_i) / (n * sum x) - (n + 1) / n, x sorted ascending, i = 1..n.
    ordered = products.select(
        (F.row_number().over(whole_table_window(IN_DEGREE)) * F.col(IN_DEGREE)).alias("_ix")
    )
    weighted = float(ordered.agg(F.sum("_ix")).first()[0])
    gini = 2.0 * weighted / (n * edges) - (n + 1.0) / n
    return {
        "products_recommended": recommended,
        "top1pct_edge_share": share,
        "gini_in_degree": gini,
    }
