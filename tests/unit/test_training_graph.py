"""Graph: vertex ids, degrees, the dataframe PageRank against networkx, engines, concentration."""

from __future__ import annotations

import random

import networkx as nx
import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from spark_app.session import DEPS_DIR, graphframes_jar_loaded
from spark_app.training.graph import (
    GRAPH_VERTEX_SCHEMA,
    GraphCounts,
    build_edges,
    build_vertices,
    choose_engine,
    degree_counts,
    degree_table,
    graph_by_index,
    graph_graphframes,
    vertex_table,
)
from tests.training_oracles import concentration, degrees, graph_dataframe, pagerank_dataframe

GRAPHFRAMES_JAR_FETCHED = any((DEPS_DIR / "graphframes-jars").glob("*.jar"))


def _small_graph(spark):
    users = spark.createDataFrame([("7",), ("8",)], "user_id string")
    products = spark.createDataFrame([("7",), ("9",), ("10",)], "product_id string")
    recs = spark.createDataFrame(
        [("7", "7", 0.9, 1), ("7", "9", 0.5, 2), ("8", "7", 0.8, 1)],
        "user_id string, product_id string, score double, rank int",
    )
    return build_vertices(users, products), build_edges(recs)


def test_user_and_product_with_equal_raw_ids_are_distinct_vertices(spark) -> None:
    users = spark.createDataFrame([("7",)], "user_id string")
    products = spark.createDataFrame([("7",)], "product_id string")
    expected = spark.createDataFrame(
        [("u:7", "user", "7"), ("p:7", "product", "7")], "id string, type string, label string"
    )
    assert_df_equality(
        build_vertices(users, products), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_degrees_count_recommendations(spark) -> None:
    vertices, edges = _small_graph(spark)
    expected = spark.createDataFrame(
        [("u:7", 0, 2), ("u:8", 0, 1), ("p:7", 2, 0), ("p:9", 1, 0), ("p:10", 0, 0)],
        "id string, in_degree long, out_degree long",
    )
    assert_df_equality(
        degrees(vertices, edges), expected, ignore_row_order=True, ignore_nullable=True
    )


def _bipartite(seed: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Users -> products with 0..6 out-edges per user; some users and 3 products isolated."""
    rng = random.Random(seed)
    products = [f"p:{i}" for i in range(25)]
    users = [f"u:{i}" for i in range(40)]
    edges = [(u, p) for u in users for p in rng.sample(products[:-3], rng.randint(0, 6))]
    return users + products, edges


@pytest.mark.parametrize("seed", [1, 2])
def test_dataframe_pagerank_matches_networkx(spark, seed: int) -> None:
    nodes, links = _bipartite(seed)
    graph = nx.DiGraph(links)
    graph.add_nodes_from(nodes)  # isolated users and products: dangling, reached by teleport
    assert any(graph.degree(v) == 0 for v in nodes if v.startswith("u:"))
    assert any(graph.degree(v) == 0 for v in nodes if v.startswith("p:"))
    expected_ranks = nx.pagerank(graph, alpha=0.85, tol=1e-13, max_iter=10_000)
    expected = spark.createDataFrame(sorted(expected_ranks.items()), "id string, pagerank double")
    vertices = spark.createDataFrame([(v,) for v in nodes], "id string")
    edges = spark.createDataFrame(links, "src string, dst string")
    ranks = pagerank_dataframe(vertices, edges, reset_probability=0.15)
    assert_approx_df_equality(ranks, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def _indexed_bipartite(spark, seed: int):
    """_bipartite's graph as integer ids, id maps (raw ids "1".. for users and products alike)
    and recommendations (user_idx, product_idx, score, rank)."""
    rng = random.Random(seed)
    users, products = list(range(40)), list(range(25))
    recs = [
        (u, p, rng.random(), r)
        for u in users
        for r, p in enumerate(rng.sample(products[:-3], rng.randint(0, 6)), start=1)
    ]
    user_map = spark.createDataFrame(
        [(str(i + 1), i) for i in users], "user_id string, user_idx int"
    )
    product_map = spark.createDataFrame(
        [(str(i + 1), i) for i in products], "product_id string, product_idx int"
    )
    return (
        spark.createDataFrame([(u,) for u in users], "user_idx int"),
        spark.createDataFrame([(p,) for p in products], "product_idx int"),
        spark.createDataFrame(recs, "user_idx int, product_idx int, score double, rank int"),
        user_map,
        product_map,
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_graph_by_index_equals_the_string_graph(spark, seed: int) -> None:
    users, products, recs, user_map, product_map = _indexed_bipartite(spark, seed)
    vertices = vertex_table(users, products, user_map, product_map)
    edges = build_edges(
        recs.join(user_map, "user_idx").join(product_map, "product_idx").drop("user_idx")
    )
    expected = graph_dataframe(vertices, edges, reset_probability=0.15)
    ours, _ = graph_by_index(users, products, recs, user_map, product_map, reset_probability=0.15)
    assert [(f.name, f.dataType) for f in ours.schema] == [
        (f.name, f.dataType) for f in expected.schema
    ]
    assert_approx_df_equality(ours, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def _inflow_of_product_zero(spark, out_degrees: list[int]) -> float:
    """degree_table's PageRank inflow of product 0 when user i recommends it and
    out_degrees[i] - 1 products of its own."""
    recs: list[tuple[int, int]] = []
    fillers = 1
    for user, degree in enumerate(out_degrees):
        recs += [(user, 0)] + [(user, fillers + j) for j in range(degree - 1)]
        fillers += degree - 1
    n_users = len(out_degrees)
    user_ids = [(f"u{u}", u) for u in range(n_users)]
    product_ids = [(f"p{p}", p) for p in range(fillers)]
    table = degree_table(
        spark.createDataFrame([(u,) for _, u in user_ids], "user_idx int"),
        spark.createDataFrame([(p,) for _, p in product_ids], "product_idx int"),
        spark.createDataFrame(recs, "user_idx int, product_idx int"),
        spark.createDataFrame(user_ids, "user_id string, user_idx int"),
        spark.createDataFrame(product_ids, "product_id string, product_idx int"),
    )
    return table.where("id = 'p:p0'").first()["_inflow"]


def test_pagerank_inflow_does_not_depend_on_the_order_of_the_edges(spark) -> None:
    # The same in-edges summed in another order: as doubles, the sums of 1 / outdeg differed
    # in their last bits (reruns on the same data wrote different vertices.csv files).
    rng = random.Random(5)
    degrees = [rng.randint(1, 10) for _ in range(300)]
    assert _inflow_of_product_zero(spark, degrees) == _inflow_of_product_zero(
        spark, degrees[::-1]
    )


def test_degree_counts_count_only_users_with_recommendations_as_sources(spark) -> None:
    # u0 -> p0, u0 -> p1, u1 -> p0; u2 has no recommendation, p2 is never recommended.
    users = spark.createDataFrame([(0,), (1,), (2,)], "user_idx int")
    products = spark.createDataFrame([(0,), (1,), (2,)], "product_idx int")
    recs = spark.createDataFrame([(0, 0), (0, 1), (1, 0)], "user_idx int, product_idx int")
    user_map = spark.createDataFrame([("a", 0), ("b", 1), ("c", 2)], "user_id string, user_idx int")
    product_map = spark.createDataFrame(
        [("x", 0), ("y", 1), ("z", 2)], "product_id string, product_idx int"
    )
    table = degree_table(users, products, recs, user_map, product_map)
    assert degree_counts(table) == GraphCounts(
        users=3, products=3, sources=2, histogram=[(0, 1), (1, 1), (2, 1)]
    )


def test_vertex_table_takes_raw_ids_from_the_maps(spark) -> None:
    users = spark.createDataFrame([(0,), (1,)], "user_idx int")
    products = spark.createDataFrame([(0,)], "product_idx int")
    user_map = spark.createDataFrame([("7", 0), ("8", 1), ("9", 2)], "user_id string, user_idx int")
    product_map = spark.createDataFrame([("7", 0), ("5", 1)], "product_id string, product_idx int")
    expected = spark.createDataFrame(
        [("u:7", "user", "7"), ("u:8", "user", "8"), ("p:7", "product", "7")],
        "id string, type string, label string",
    )
    assert_df_equality(
        vertex_table(users, products, user_map, product_map), expected, ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip


def test_dataframe_engine_returns_the_vertex_schema(spark) -> None:
    vertices, edges = _small_graph(spark)
    table = graph_dataframe(vertices, edges, reset_probability=0.15)
    assert [(f.name, f.dataType) for f in table.schema] == [
        (f.name, f.dataType) for f in GRAPH_VERTEX_SCHEMA
    ]


@pytest.mark.skipif(
    not GRAPHFRAMES_JAR_FETCHED,
    reason="GraphFrames' JVM jar (io.graphframes:graphframes-spark4_2.13) is not in "
    ".deps/graphframes-jars: the registry this machine reaches does not serve it",
)
def test_graphframes_engine_matches_dataframe_engine(spark) -> None:
    if not graphframes_jar_loaded(spark):
        pytest.skip("GraphFrames' jar was fetched but is not loaded in this Spark session")
    vertices, edges = _small_graph(spark)
    ours = graph_dataframe(vertices, edges, reset_probability=0.15)
    theirs = graph_graphframes(vertices, edges, iterations=20, reset_probability=0.15)
    assert_df_equality(theirs.drop("pagerank"), ours.drop("pagerank"), ignore_row_order=True)


def test_auto_engine_falls_back_to_dataframe_without_the_jar() -> None:
    assert choose_engine("auto", jar_loaded=False) == "dataframe"


def test_graphframes_engine_without_the_jar_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="jar is not loaded"):
        choose_engine("graphframes", jar_loaded=False)


def test_concentration_of_product_in_degree(spark) -> None:
    # products in-degree [3, 1, 0, 0]: top 1% of 4 -> 1 product with 3 of 4 edges;
    # Gini over sorted [0, 0, 1, 3] = 2 * (3*1 + 4*3) / (4 * 4) - 5/4 = 0.625
    table = spark.createDataFrame(
        [("p:1", "product", 3), ("p:2", "product", 1), ("p:3", "product", 0),
         ("p:4", "product", 0), ("u:1", "user", 0)],
        "id string, type string, in_degree long",
    )  # fmt: skip
    expected = {"products_recommended": 2, "top1pct_edge_share": 0.75, "gini_in_degree": 0.625}
    assert concentration(table) == pytest.approx(expected)
