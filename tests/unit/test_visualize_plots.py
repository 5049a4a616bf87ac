"""What each picture draws comes from the data; every PNG has the expected pixel size."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from tests.visualize_fixtures import png_size, top_products, write_rejected, write_run
from visualize import plots
from visualize.loading import load_history, load_run
from visualize.plots import (
    PlotOptions,
    plot_degrees,
    plot_graph,
    plot_quality,
    plot_top_products,
    sample_graph,
)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory):
    """A run larger than the drawing limits: 2,000 users x 10 over 500 products."""
    results = tmp_path_factory.mktemp("big")
    written = write_run(results, n_users=2000, n_products=500, recs_per_user=10)
    return written, load_run(written.path)


def test_top_products_bars_are_the_top_ten_by_in_degree(tmp_path: Path) -> None:
    written = write_run(tmp_path, sequence=1)
    run = load_run(written.path)
    drawn = plot_top_products(run.vertices, tmp_path / "top.png")
    expected = top_products(written.vertices, 10)
    assert list(drawn.labels) == expected
    by_label = written.vertices.set_index("label")["in_degree"]
    assert list(drawn.values) == [int(by_label[label]) for label in expected]
    assert png_size(drawn.path) == drawn.size_px == (1000, 600)


def test_top_products_with_fewer_products_than_bars(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, n_products=4, recs_per_user=2).path)
    drawn = plot_top_products(run.vertices, tmp_path / "top.png")
    assert len(drawn.labels) == 4
    assert list(drawn.values) == sorted(drawn.values, reverse=True)


def test_small_graph_is_drawn_whole(tmp_path: Path) -> None:
    written = write_run(tmp_path, n_users=30, n_products=12, recs_per_user=5)
    run = load_run(written.path)
    drawn = plot_graph(run.vertices, run.edges, tmp_path / "graph.png", run_id=run.run_id)
    assert not drawn.sampled
    assert (drawn.users_drawn, drawn.products_drawn, drawn.edges_drawn) == (30, 12, 150)
    assert set(drawn.product_labels) == set(written.vertices.query("type == 'product'")["label"])
    assert png_size(drawn.path) == drawn.size_px == (1200, 1200)


def test_large_graph_is_sampled_within_bounds(big, tmp_path: Path) -> None:
    written, run = big
    options = PlotOptions(max_products=20, max_users=150)
    drawn = plot_graph(run.vertices, run.edges, tmp_path / "graph.png", options=options)
    sample = sample_graph(run.vertices, run.edges, options)
    assert drawn.sampled
    assert drawn.products_drawn == len(sample.products) == 20
    assert drawn.users_drawn == len(sample.users) == 150
    assert drawn.edges_drawn == len(sample.edges) <= 150 * 10
    assert list(drawn.product_labels) == top_products(written.vertices, 20)
    assert (drawn.total_users, drawn.total_products, drawn.total_edges) == (2000, 500, 20000)
    assert "sample: 20 of 500 products, 150 of 2,000 users" in sample.caption()
    # every drawn edge joins a drawn user and a drawn product
    assert set(sample.edges["src"]) <= set(sample.users["id"])
    assert set(sample.edges["dst"]) <= set(sample.products["id"])


def test_sample_gives_every_top_product_users_and_is_deterministic(big) -> None:
    _, run = big
    options = PlotOptions(max_products=10, max_users=40)
    first = sample_graph(run.vertices, run.edges, options)
    again = sample_graph(run.vertices, run.edges, options)
    assert first.users["id"].tolist() == again.users["id"].tolist()
    assert first.edges.equals(again.edges)
    assert set(first.edges["dst"]) == set(first.products["id"])  # round-robin reached all ten


def test_graph_png_size_follows_figsize_and_dpi(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path).path)
    options = PlotOptions(dpi=50, graph_size=(8.0, 6.0))
    drawn = plot_graph(run.vertices, run.edges, tmp_path / "g.png", options=options)
    assert png_size(drawn.path) == (400, 300)


def test_degrees_come_from_the_vertices_and_metrics(tmp_path: Path) -> None:
    written = write_run(tmp_path, n_users=30, n_products=12, recs_per_user=5)
    run = load_run(written.path)
    drawn = plot_degrees(run.vertices, run.metrics, tmp_path / "degrees.png")
    assert drawn.user_out_degree == ((5, 30),)
    assert sum(drawn.product_in_degree) == len(written.edges)
    assert list(drawn.product_in_degree) == sorted(drawn.product_in_degree, reverse=True)
    share = run.metrics.graph.top1pct_edge_share
    gini = run.metrics.graph.gini_in_degree
    assert f"{share:.1%}" in drawn.annotation
    assert f"{gini:.2f}" in drawn.annotation
    assert png_size(drawn.path) == drawn.size_px == (1300, 500)


def test_long_tailed_in_degree_is_log_scaled(big, tmp_path: Path) -> None:
    _, run = big
    drawn = plot_degrees(run.vertices, run.metrics, tmp_path / "degrees.png")
    assert drawn.product_log
    assert not drawn.user_log_y  # every user gets exactly ten recommendations
    assert drawn.user_out_degree == ((10, 2000),)


def test_quality_has_one_point_per_run(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, sequence=s) for s in (1, 2, 3)]
    rejected = write_rejected(tmp_path, sequence=4)
    drawn = plot_quality(load_history(tmp_path), tmp_path / "q.png", current_run=runs[-1].run_id)
    assert drawn.run_ids == (*(r.run_id for r in runs), rejected)
    assert drawn.statuses == ("published",) * 3 + ("rejected",)
    assert drawn.x_axis == "sequence"
    for name in ("rmse", "precision_at_k", "ndcg_at_k", "coverage"):
        assert len(drawn.model[name]) == 4
        assert drawn.model[name][:3] == tuple(r.metrics["model"][name] for r in runs)
    assert drawn.baseline["rmse"] == (None,) * 4
    assert drawn.model["novelty"][:3] == tuple(
        r.metrics["beyond_accuracy"]["novelty"] for r in runs)
    assert png_size(drawn.path) == drawn.size_px == (2000, 800)


def test_quality_with_a_single_run(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    drawn = plot_quality(load_history(tmp_path), tmp_path / "q.png", current_run=run.run_id)
    assert drawn.run_ids == (run.run_id,)
    assert drawn.model["ndcg_at_k"] == (run.metrics["model"]["ndcg_at_k"],)
    assert png_size(drawn.path) == (2000, 800)


def test_quality_falls_back_to_sequence_without_timestamps(tmp_path: Path) -> None:
    write_run(tmp_path, sequence=1)
    history = load_history(tmp_path).assign(created_at=None)
    drawn = plot_quality(history, tmp_path / "q.png")
    assert drawn.x_axis == "sequence"


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """Each figure the plots save, by file name, looked at just before it is saved."""
    seen: dict[str, dict] = {}
    original = plots._save

    def save(fig: Figure, path: Path, dpi: int) -> tuple[int, int]:
        seen[path.name] = {
            "clipped": plots.clipped_texts(fig),
            "x_ticks": [_shown_ticks(ax) for ax in fig.axes],
        }
        return original(fig, path, dpi)

    monkeypatch.setattr(plots, "_save", save)
    return seen


def _shown_ticks(ax) -> tuple[str, ...]:
    """The x tick labels of ``ax`` inside its limits (what the picture shows)."""
    low, high = sorted(ax.get_xlim())
    locs = [at for at in ax.xaxis.get_majorticklocs() if low <= at <= high]
    return tuple(ax.xaxis.get_major_formatter().format_ticks(locs))


def test_quality_x_axis_is_the_run_number_not_the_clock(tmp_path: Path, saved) -> None:
    """Defect 13 of issue 26: wall-clock ticks were unreadable; runs are numbered."""
    for s in (1, 2, 3):
        write_run(tmp_path, sequence=s, created_at=datetime(2026, 11, 27, 10, s, 7 * s, tzinfo=UTC))
    plot_quality(load_history(tmp_path), tmp_path / "q.png", options=PlotOptions(dpi=30))
    assert set(saved["q.png"]["x_ticks"]) == {("1", "2", "3")}


def test_no_text_is_cut_off_in_any_picture(tmp_path: Path, saved) -> None:
    """Defect 13 of issue 26: a panel title ran past the edge of degrees.png."""
    write_run(tmp_path, sequence=1)
    written = write_run(tmp_path, sequence=2, n_users=300, n_products=200)  # 13 never recommended
    write_rejected(tmp_path, sequence=3)
    run = load_run(written.path)
    plot_graph(run.vertices, run.edges, tmp_path / "graph.png", run_id=run.run_id)
    plot_degrees(run.vertices, run.metrics, tmp_path / "degrees.png")
    plot_top_products(run.vertices, tmp_path / "top.png")
    plot_quality(load_history(tmp_path), tmp_path / "quality.png", current_run=run.run_id)
    assert {name: seen["clipped"] for name, seen in saved.items()} == {
        "graph.png": [], "degrees.png": [], "top.png": [], "quality.png": []}


def test_users_without_recommendation_are_counted_and_explained(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, n_users=10, n_products=12, recs_per_user=3).path)
    lonely = pd.DataFrame({"id": ["u:l1", "u:l2"], "type": "user", "label": ["l1", "l2"],
                           "in_degree": 0, "out_degree": 0})
    vertices = pd.concat([run.vertices, lonely], ignore_index=True)
    graph = plot_graph(vertices, run.edges, tmp_path / "g.png", options=PlotOptions(dpi=30))
    degrees = plot_degrees(vertices, run.metrics, tmp_path / "d.png", options=PlotOptions(dpi=30))
    assert (graph.users_without_recommendation, degrees.users_without_recommendation) == (2, 2)


def test_ids_that_matplotlib_would_read_as_formulas_are_drawn_as_text(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, n_users=10, n_products=4, recs_per_user=2).path)
    vertices = run.vertices.copy()
    products = vertices["type"] == "product"
    vertices.loc[products, "label"] = ["$\\frac$", "$x$", "a\x00b", "rtl\u202e"]
    drawn = plot_top_products(vertices, tmp_path / "top.png", options=PlotOptions(dpi=30))
    graph = plot_graph(vertices, run.edges, tmp_path / "g.png", options=PlotOptions(dpi=30))
    assert (len(drawn.labels), graph.products_drawn) == (4, 4)


def test_users_and_products_without_edges_are_still_drawn(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, n_users=10, n_products=12, recs_per_user=3).path)
    extra = pd.DataFrame(
        {"id": ["u:lonely1", "u:lonely2"], "type": "user", "label": ["lonely1", "lonely2"],
         "in_degree": 0, "out_degree": 0}
    )
    vertices = pd.concat([run.vertices, extra], ignore_index=True)
    drawn = plot_graph(vertices, run.edges, tmp_path / "g.png", options=PlotOptions(dpi=30))
    assert (drawn.users_drawn, drawn.products_drawn, drawn.edges_drawn) == (12, 12, 30)
