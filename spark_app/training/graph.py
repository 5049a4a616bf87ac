"""Graph: the recommendation graph (users -> recommended products) and its figures.

Vertices are every user and every product of the training set (`u:<id>`, `p:<id>`, so a user
and a product never share an id); edges are the top-N recommendations (score, rank).
Per vertex: in-degree, out-degree and PageRank, computed by one of two engines with the same
output schema:

- `graphframes`: GraphFrame.inDegrees / outDegrees / pageRank (needs GraphFrames' JVM jar);
  its PageRank is rescaled to sum to 1.
- `dataframe`: plain DataFrame operations on the integer ids, one pass over the
  recommendations. PageRank as networkx.pagerank defines it (the mass of dangling vertices,
  those without out-edges, spread evenly over all vertices), exactly, by its closed form for a
  graph whose edges all go from users to products (see with_pagerank and docs/training.md,
  "Graph"); `iterations` applies to the graphframes engine only.

Concentration: the share of edges that point at the top 1% of the catalog's products (at least
one product), and the Gini coefficient of product in-degree over the whole catalog (products
never recommended count as 0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from recsys_contract.runs import IN_DEGREE, OUT_DEGREE, PAGERANK, GraphFigures
from spark_app.schema import (
    EDGE_DST,
    EDGE_SRC,
    PRODUCT_ID,
    PRODUCT_IDX,
    PRODUCT_TYPE,
    PRODUCT_VERTEX_PREFIX,
    RANK,
    SCORE,
    USER_ID,
    USER_IDX,
    USER_TYPE,
    USER_VERTEX_PREFIX,
    VERTEX_ID,
    VERTEX_LABEL,
    VERTEX_TYPE,
)
from spark_app.training.prepare import require_columns

ENGINES = ("auto", "graphframes", "dataframe")
TOP_SHARE_FRACTION = 0.01  # "top 1% of products" in the concentration figure
_INFLOW = "_inflow"  # PageRank: sum over a product's in-edges u -> p of 1 / outdeg(u)
# The inflow is summed in fixed point, as integers: Spark adds a group's values in whatever
# order its tasks deliver them, and a sum of doubles depends on the order (reruns on the same
# data wrote PageRanks differing in their last digits). Each 1 / outdeg is rounded to
# 2^-32 (an error below 1.2e-10); a product overflows a long beyond 2^31 in-edges.
_INFLOW_SCALE = float(2**32)
_SOURCE = "_source"  # degree_counts(): the vertex has out-edges
# A product's self-information, -log2(share of users who bought it): novelty averages it over
# the recommendations (degree_counts sums it weighted by in-degree).
SELF_INFORMATION = "_self_information"

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
        # The model's scores are single precision: written as such, not widened to double
        # (0.050853316, not 0.050853315740823746).
        StructField(SCORE, FloatType(), True),
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
    """`u:<raw>`: a user's vertex id, never equal to a product's whatever the raw ids."""
    return F.concat(F.lit(USER_VERTEX_PREFIX), F.col(raw).cast("string"))


def product_vertex_col(raw: str) -> F.Column:
    """`p:<raw>`: a product's vertex id, never equal to a user's whatever the raw ids."""
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


def vertex_table(
    users: DataFrame, products: DataFrame, user_map: DataFrame, product_map: DataFrame
) -> DataFrame:
    """build_vertices() of users (user_idx) and products (product_idx), raw ids from the maps."""
    require_columns(users, (USER_IDX,), "vertex_table users")
    require_columns(products, (PRODUCT_IDX,), "vertex_table products")
    return build_vertices(
        users.join(user_map.select(USER_ID, USER_IDX), USER_IDX).select(USER_ID),
        products.join(product_map.select(PRODUCT_ID, PRODUCT_IDX), PRODUCT_IDX).select(PRODUCT_ID),
    )


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


def inflow_sum(out_degree: Column) -> Column:
    """Aggregate: the sum of 1 / out_degree over a group's rows, the same whatever their order
    (see _INFLOW_SCALE)."""
    scaled = F.round(F.lit(_INFLOW_SCALE) / out_degree).cast(LongType())
    return F.sum(scaled) / F.lit(_INFLOW_SCALE)


def degree_table(
    users: DataFrame,
    products: DataFrame,
    recs: DataFrame,
    user_map: DataFrame,
    product_map: DataFrame,
) -> DataFrame:
    """Every vertex (id, type, label) with in_degree, out_degree and the sum over its in-edges
    u -> v of 1 / outdeg(u) that PageRank needs (`_inflow`), from integer ids, without building
    the string vertex and edge tables first; with_pagerank() completes it.

    users: (user_idx) and products: (product_idx, optionally SELF_INFORMATION) of the training
    set, each once; recs: the recommendations (user_idx, product_idx); the id maps give the
    raw ids. Degrees are computed on the integer ids (two small group-bys over the
    recommendations), then the id maps are joined once per vertex for the `u:`/`p:` ids and
    labels.
    """
    require_columns(users, (USER_IDX,), "degree_table users")
    require_columns(products, (PRODUCT_IDX,), "degree_table products")
    require_columns(recs, (USER_IDX, PRODUCT_IDX), "degree_table recs")
    outs = recs.groupBy(USER_IDX).agg(F.count(F.lit(1)).alias(OUT_DEGREE))
    ins = (
        recs.select(USER_IDX, PRODUCT_IDX)
        .join(outs, USER_IDX)
        .groupBy(PRODUCT_IDX)
        .agg(
            F.count(F.lit(1)).alias(IN_DEGREE),
            inflow_sum(F.col(OUT_DEGREE)).alias(_INFLOW),
        )
    )
    user_v = (
        users.select(USER_IDX)
        .join(user_map.select(USER_ID, USER_IDX), USER_IDX)
        .join(outs, USER_IDX, "left")
        .select(
            user_vertex_col(USER_ID).alias(VERTEX_ID),
            F.lit(USER_TYPE).alias(VERTEX_TYPE),
            F.col(USER_ID).alias(VERTEX_LABEL),
            F.lit(0).cast(LongType()).alias(IN_DEGREE),
            F.coalesce(F.col(OUT_DEGREE), F.lit(0)).cast(LongType()).alias(OUT_DEGREE),
            F.lit(None).cast(DoubleType()).alias(_INFLOW),
        )
    )
    product_v = (
        products.join(product_map.select(PRODUCT_ID, PRODUCT_IDX), PRODUCT_IDX)
        .join(ins, PRODUCT_IDX, "left")
        .select(
            product_vertex_col(PRODUCT_ID).alias(VERTEX_ID),
            F.lit(PRODUCT_TYPE).alias(VERTEX_TYPE),
            F.col(PRODUCT_ID).alias(VERTEX_LABEL),
            F.coalesce(F.col(IN_DEGREE), F.lit(0)).cast(LongType()).alias(IN_DEGREE),
            F.lit(0).cast(LongType()).alias(OUT_DEGREE),
            F.col(_INFLOW),
            _self_information(products),
        )
    )
    return user_v.withColumn(SELF_INFORMATION, F.lit(None).cast(DoubleType())).unionByName(
        product_v)


def _self_information(products: DataFrame) -> Column:
    """products' SELF_INFORMATION column if they carry it, else null."""
    if SELF_INFORMATION in products.columns:
        return F.col(SELF_INFORMATION)
    return F.lit(None).cast(DoubleType()).alias(SELF_INFORMATION)


@dataclass(frozen=True)
class GraphCounts:
    """What with_pagerank() and the concentration figures need of a degree_table()."""

    users: int
    products: int
    sources: int  # vertices with out-edges: the users with recommendations
    histogram: list[tuple[int, int]]  # (in-degree, number of products), ascending
    information: float = 0.0  # sum over the edges of their product's SELF_INFORMATION


def degree_counts(table: DataFrame) -> GraphCounts:
    """GraphCounts of a degree_table(), in one Spark job (which fills its cache if cached).

    Small whatever the data: a row per vertex type, in-degree and has-out-edges, and there are
    fewer distinct in-degrees than sqrt(2 * edges) + 1.
    """
    require_columns(table, (VERTEX_TYPE, IN_DEGREE, OUT_DEGREE), "degree_counts")
    rows = (
        table.groupBy(VERTEX_TYPE, IN_DEGREE, (F.col(OUT_DEGREE) > 0).alias(_SOURCE))
        .agg(F.count(F.lit(1)).alias("_vertices"),
             F.sum(F.col(IN_DEGREE) * F.col(SELF_INFORMATION)).alias("_information"))
        .collect()
    )
    users = sum(r["_vertices"] for r in rows if r[VERTEX_TYPE] == USER_TYPE)
    products = Counter()
    for r in rows:
        if r[VERTEX_TYPE] == PRODUCT_TYPE:
            products[int(r[IN_DEGREE])] += int(r["_vertices"])
    return GraphCounts(
        users=int(users),
        products=sum(products.values()),
        sources=int(sum(r["_vertices"] for r in rows if r[_SOURCE])),
        histogram=sorted(products.items()),
        information=sum(r["_information"] or 0.0 for r in rows),
    )


def with_pagerank(table: DataFrame, counts: GraphCounts, reset_probability: float) -> DataFrame:
    """Every vertex with its degrees and PageRank (GRAPH_VERTEX_SCHEMA) from a degree_table()
    and its counts. With d = 1 - reset, N vertices and S sources (vertices with out-edges),
    every vertex without in-edges has rank c = 1 / (N + d * S), and a vertex v with in-edges
    c * (1 + d * sum over its in-edges u -> v of 1 / outdeg(u)): valid because no vertex has
    both in- and out-edges. The constants are computed once, as literals."""
    d = 1.0 - reset_probability
    base = 1.0 / (counts.users + counts.products + d * counts.sources)
    inflow = F.coalesce(F.col(_INFLOW), F.lit(0.0))
    return _conform(
        table.withColumn(PAGERANK, F.lit(base) * (F.lit(1.0) + F.lit(d) * inflow)),
        GRAPH_VERTEX_SCHEMA,
    )


def graph_by_index(
    users: DataFrame,
    products: DataFrame,
    recs: DataFrame,
    user_map: DataFrame,
    product_map: DataFrame,
    reset_probability: float,
    cache: Callable[[DataFrame], DataFrame] = lambda df: df,
) -> tuple[DataFrame, GraphCounts]:
    """The `dataframe` engine: every vertex with its figures (GRAPH_VERTEX_SCHEMA) from integer
    ids, and the counts. One Spark job counts what the PageRank and the concentration figures
    need, from the degree table (`cache` keeps it for the vertices' export)."""
    table = cache(degree_table(users, products, recs, user_map, product_map))
    counts = degree_counts(table)
    return with_pagerank(table, counts, reset_probability), counts


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


def in_degree_histogram(graph: DataFrame) -> list[tuple[int, int]]:
    """(in-degree, number of products) over the catalog's products, in one Spark job.

    Small whatever the data: there are fewer distinct in-degrees than sqrt(2 * edges) + 1.
    """
    counts = (
        graph.where(F.col(VERTEX_TYPE) == PRODUCT_TYPE)
        .groupBy(IN_DEGREE)
        .agg(F.count(F.lit(1)).alias("_products"))
        .collect()
    )
    return sorted((int(row[IN_DEGREE]), int(row["_products"])) for row in counts)


def concentration_of(histogram: list[tuple[int, int]]) -> dict[str, float | int | None]:
    """Edge share of the top 1% of products and Gini of product in-degree (whole catalog),
    from in_degree_histogram()."""
    n = sum(count for _, count in histogram)
    edges = sum(degree * count for degree, count in histogram)
    recommended = sum(count for degree, count in histogram if degree > 0)
    if n == 0 or edges == 0:
        return {
            "products_recommended": recommended,
            "top1pct_edge_share": None,
            "gini_in_degree": None,
        }
    left = max(1, int(n * TOP_SHARE_FRACTION))
    top_edges = 0
    for degree, count in reversed(histogram):  # the most recommended products first
        taken = min(left, count)
        top_edges += degree * taken
        left -= taken
        if left == 0:
            break
    # Gini = 2 * sum(i * x_i) / (n * sum x) - (n + 1) / n, x sorted ascending, i = 1..n;
    # the `count` products of one degree hold positions below+1 .. below+count.
    weighted, below = 0, 0
    for degree, count in histogram:
        weighted += degree * (count * below + count * (count + 1) // 2)
        below += count
    gini = 2.0 * weighted / (n * edges) - (n + 1.0) / n
    return {
        "products_recommended": recommended,
        "top1pct_edge_share": top_edges / edges,
        "gini_in_degree": gini,
    }


@dataclass(frozen=True)
class RecommendationGraph:
    """The graph stage's result: every vertex with its figures (GRAPH_VERTEX_SCHEMA), the
    products' in-degree histogram, and the engine that computed them."""

    vertices: DataFrame
    histogram: list[tuple[int, int]]
    engine: str
    novelty: float | None  # mean self-information of the recommended products

    def figures(self, users: int, products: int) -> GraphFigures:
        """metrics.json's graph section."""
        edges = sum(degree * count for degree, count in self.histogram)
        return GraphFigures(vertices=users + products, edges=edges, users=users,
                            products=products, **concentration_of(self.histogram))


def build_graph(
    engine: str,
    *,
    users: DataFrame,
    products: DataFrame,
    recs: DataFrame,
    named_edges: DataFrame,
    user_map: DataFrame,
    product_map: DataFrame,
    iterations: int,
    reset_probability: float,
    cache: Callable[[DataFrame], DataFrame],
) -> RecommendationGraph:
    """The recommendation graph of `recs` (user_idx, product_idx) over the training set's
    `users` (user_idx) and `products` (product_idx, SELF_INFORMATION), by `engine`
    (choose_engine); `cache`
    keeps a table that two jobs read (the caller unpersists it)."""
    if engine == "dataframe":
        vertices, counts = graph_by_index(users, products, recs, user_map, product_map,
                                          reset_probability, cache)
        edges = sum(degree * count for degree, count in counts.histogram)
        novelty = counts.information / edges if edges else None
        return RecommendationGraph(vertices, counts.histogram, engine, novelty)
    vertices = vertex_table(users, products.select(PRODUCT_IDX), user_map, product_map)
    graph = cache(graph_graphframes(vertices, named_edges, iterations=iterations,
                                    reset_probability=reset_probability))
    novelty = recs.join(products, PRODUCT_IDX).agg(F.avg(SELF_INFORMATION)).first()[0]
    return RecommendationGraph(graph, in_degree_histogram(graph), engine, novelty)


def self_information(buyers: Column, users: int) -> Column:
    """-log2 of the share of the `users` who bought a product (its `buyers`)."""
    return (-F.log2(buyers / F.lit(max(users, 1)))).alias(SELF_INFORMATION)
