"""The four pictures of a run: recommendation graph, degrees, top products, quality over runs.

Each ``plot_*`` function saves one PNG and returns what it drew (a small dataclass), so tests
check the drawing against the data without reading pixels. Figures are plain
``matplotlib.figure.Figure`` objects rendered by Agg (no pyplot state, no window) and are
cleared after saving, so a long ``--watch`` does not grow.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from recsys_contract.runs import (
    BEYOND_ACCURACY_NAMES,
    EDGE_DST,
    EDGE_SRC,
    IN_DEGREE,
    METRIC_NAMES,
    OUT_DEGREE,
    SCORE,
    VERTEX_ID,
    VERTEX_LABEL,
    Metrics,
)
from visualize.ids import visible_id
from visualize.loading import PUBLISHED, REJECTED, split_vertices

logger = logging.getLogger(__name__)

USER_COLOUR = "#4C72B0"
PRODUCT_COLOUR = "#DD8452"
EDGE_COLOUR = (0.25, 0.32, 0.45)
MODEL_COLOUR = "#2A6FBA"
BASELINE_COLOUR = "#7F7F7F"
REJECTED_COLOUR = "#C0392B"
METRIC_TITLES = {
    "rmse": "RMSE (lower is better)",
    "precision_at_k": "Precision@{k}",
    "recall_at_k": "Recall@{k}",
    "ndcg_at_k": "NDCG@{k}",
    "map_at_k": "MAP@{k}",
    "coverage": "Coverage of the test users' lists",
    "catalog_coverage": "Catalogue coverage (all lists)",
    "gini": "Gini of recommendation counts",
    "novelty": "Novelty (bits, higher = rarer)",
    "intra_list_diversity": "Intra-list diversity",
}


@dataclass(frozen=True)
class PlotOptions:
    """Sizes and limits of the pictures; the defaults are documented in docs/visualize.md."""

    dpi: int = 100
    graph_size: tuple[float, float] = (12.0, 12.0)  # inches; 1200x1200 px at 100 dpi
    degree_size: tuple[float, float] = (13.0, 5.0)
    top_size: tuple[float, float] = (10.0, 6.0)
    quality_size: tuple[float, float] = (20.0, 8.0)
    max_products: int = 20  # more products than this: draw a sample, the top ones by in-degree
    max_users: int = 150  # more users than this: sample them round-robin by best score
    top_n: int = 10  # bars in the top-products chart


DEFAULT_OPTIONS = PlotOptions()


@dataclass(frozen=True)
class GraphSample:
    """The part of the recommendation graph that is drawn, and the sizes it was taken from."""

    users: pd.DataFrame
    products: pd.DataFrame
    edges: pd.DataFrame
    total_users: int
    total_products: int
    total_edges: int
    sampled: bool

    def caption(self) -> str:
        """'sample: 20 of 9,812 products, ...' or 'all 12 products, ...'."""
        if not self.sampled:
            return (
                f"all {self.total_products:,} products, {self.total_users:,} users, "
                f"{self.total_edges:,} recommendations"
            )
        return (
            f"sample: {len(self.products):,} of {self.total_products:,} products, "
            f"{len(self.users):,} of {self.total_users:,} users, "
            f"{len(self.edges):,} of {self.total_edges:,} recommendations"
        )


@dataclass(frozen=True)
class GraphDrawing:
    """What the graph picture shows."""

    path: Path
    size_px: tuple[int, int]
    users_drawn: int
    products_drawn: int
    edges_drawn: int
    total_users: int
    total_products: int
    total_edges: int
    sampled: bool
    product_labels: tuple[str, ...]
    title: str
    users_without_recommendation: int = 0  # in the whole graph (drawn in the centre if drawn)


@dataclass(frozen=True)
class DegreeDrawing:
    """What the degree-distribution picture shows."""

    path: Path
    size_px: tuple[int, int]
    user_out_degree: tuple[tuple[int, int], ...]  # (out-degree, number of users)
    product_in_degree: tuple[int, ...]  # recommended products' in-degrees, largest first
    products_never_recommended: int
    user_log_y: bool
    product_log: bool
    annotation: str
    users_without_recommendation: int = 0


@dataclass(frozen=True)
class TopProductsDrawing:
    """The bars of the top-products chart, first bar = most recommended."""

    path: Path
    size_px: tuple[int, int]
    labels: tuple[str, ...]
    values: tuple[int, ...]


@dataclass(frozen=True)
class QualityDrawing:
    """The points of the quality-over-runs picture: one per run, per metric."""

    path: Path
    size_px: tuple[int, int]
    run_ids: tuple[str, ...]
    statuses: tuple[str, ...]
    x_axis: str  # "sequence": the training run's number
    model: dict[str, tuple[float | None, ...]] = field(default_factory=dict)
    baseline: dict[str, tuple[float | None, ...]] = field(default_factory=dict)


# --- helpers -----------------------------------------------------------------------------------


def _save(fig: Figure, path: Path, dpi: int) -> tuple[int, int]:
    """Save ``fig`` as PNG at its own size (no tight bbox: the pixel size stays figsize*dpi).

    An id may hold characters the font lacks (emoji): they are drawn as boxes, without a
    warning per glyph (the page's tables show the ids exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
        fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    width, height = fig.get_size_inches()
    fig.clear()  # drop artists now; the Figure is not registered with pyplot
    return round(width * dpi), round(height * dpi)


def _short(label: str, limit: int = 18) -> str:
    """An id as a picture shows it: invisible characters escaped (visualize.ids), cut to
    ``limit`` characters (long ids would leave the figure). Draw it with parse_math=False, or
    through `_literal`: matplotlib takes text between two `$` for a formula (and fails on
    an id such as `$\\frac$`)."""
    shown = visible_id(label)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _literal(text: str) -> str:
    """``text`` for a matplotlib text that parses math (a tick label): every `$` literal."""
    return text.replace("$", r"\$")


NO_RECOMMENDATION = (
    "no recommendation: they had already bought every product the model could recommend"
)


def users_without_recommendation(vertices: pd.DataFrame) -> int:
    """Users of the graph with out-degree 0 (recommend.exclude_purchased left nothing)."""
    users, _ = split_vertices(vertices)
    return int((users[OUT_DEGREE] == 0).sum())


def clipped_texts(fig: Figure) -> list[str]:
    """What of ``fig`` reaches beyond its edges (cut off in the PNG): a figure text or legend by
    its text, a panel (its title, tick labels, axis labels, texts) by its title."""
    canvas = FigureCanvasAgg(fig)  # what savefig renders a PNG with
    canvas.draw()  # lays the figure out (constrained layout) as saving does
    renderer = canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height

    def outside(box: Any) -> bool:
        return box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1

    clipped = [t.get_text() for t in fig.texts if t.get_visible() and t.get_text()
               and outside(t.get_window_extent(renderer))]
    clipped += [" / ".join(t.get_text() for t in legend.get_texts()) for legend in fig.legends
                if outside(legend.get_window_extent(renderer))]
    clipped += [f"panel {ax.get_title()!r}" for ax in fig.axes
                if outside(ax.get_tightbbox(renderer))]
    return clipped


def long_tail(values: np.ndarray) -> bool:
    """True when positive ``values`` span a decade or more: worth a log scale."""
    positive = np.asarray(values, dtype=float)
    positive = positive[positive > 0]
    if positive.size < 2:
        return False
    return bool(positive.max() / max(np.median(positive), 1e-12) >= 10)


def ranked_products(vertices: pd.DataFrame) -> pd.DataFrame:
    """Recommended products (in-degree > 0), most recommended first, ties by vertex id."""
    _, products = split_vertices(vertices)
    products = products[products[IN_DEGREE] > 0]
    return products.sort_values([IN_DEGREE, VERTEX_ID], ascending=[False, True], kind="stable")


# --- recommendation graph ----------------------------------------------------------------------


def sample_graph(
    vertices: pd.DataFrame, edges: pd.DataFrame, options: PlotOptions = DEFAULT_OPTIONS
) -> GraphSample:
    """The drawn part of the graph: all of it when small, else top products and their users.

    The whole graph is drawn when it has at most ``max_products`` products and ``max_users``
    users. Otherwise the sample keeps the ``max_products`` products with the highest in-degree,
    then picks users round-robin over those products, each product taking its next
    highest-scoring user not yet picked, until ``max_users``; every edge between picked users
    and products is drawn. Deterministic: ties break on vertex ids.
    """
    users, products = split_vertices(vertices)
    totals = {"total_users": len(users), "total_products": len(products),
              "total_edges": len(edges)}
    if len(users) <= options.max_users and len(products) <= options.max_products:
        products = products.sort_values([IN_DEGREE, VERTEX_ID], ascending=[False, True])
        return GraphSample(users, products, edges, sampled=False, **totals)
    top = ranked_products(vertices).head(options.max_products)
    order = pd.Series(np.arange(len(top)), index=top[VERTEX_ID].to_numpy())
    near = edges[edges[EDGE_DST].isin(order.index)]
    near = near.sort_values([SCORE, EDGE_SRC], ascending=[False, True], kind="stable")
    turns = near.assign(
        _turn=near.groupby(EDGE_DST, sort=False).cumcount(),
        _product=near[EDGE_DST].map(order),
    ).sort_values(["_turn", "_product"], kind="stable")
    picked = turns[EDGE_SRC].drop_duplicates().head(options.max_users)
    sub_edges = near[near[EDGE_SRC].isin(picked)]
    sub_users = users[users[VERTEX_ID].isin(picked)]
    return GraphSample(sub_users, top, sub_edges, sampled=True, **totals)


def _layout(sample: GraphSample) -> dict[str, np.ndarray]:
    """Products evenly on a unit circle, most recommended at the top and then clockwise; each
    user in a fan just inside its "home" product (the one it scores highest), best score
    nearest. Geometric, so the same data always gives the same picture; labels go outside."""
    product_ids = sample.products[VERTEX_ID].tolist()
    n = max(len(product_ids), 1)
    angles = math.pi / 2 - 2 * math.pi * np.arange(n) / n
    angle_of = dict(zip(product_ids, angles, strict=True))
    pos = {p: np.array([math.cos(a), math.sin(a)]) for p, a in angle_of.items()}
    if sample.users.empty:
        return pos
    best = sample.edges.sort_values([SCORE, EDGE_DST], ascending=[False, True], kind="stable")
    home = best.drop_duplicates(EDGE_SRC)[[EDGE_SRC, EDGE_DST]]
    slot = 2 * math.pi / n * 0.8 if n > 1 else 2 * math.pi * 0.9
    spacing = 0.045  # between neighbouring users, in units of the product circle's radius
    for product, group in home.groupby(EDGE_DST, sort=False):
        centre = angle_of[product]
        remaining = group[EDGE_SRC].tolist()
        radius = 0.84
        while remaining:
            per_row = max(1, int(slot * radius / spacing))
            row, remaining = remaining[:per_row], remaining[per_row:]
            offsets = (np.arange(len(row)) - (len(row) - 1) / 2) * (spacing / radius)
            # alternate sides from the middle so the best-scoring users sit at the centre
            for user, offset in zip(row, sorted(offsets, key=abs), strict=True):
                a = centre + offset
                pos[user] = np.array([radius * math.cos(a), radius * math.sin(a)])
            radius -= spacing * 1.3
    lonely = [u for u in sample.users[VERTEX_ID] if u not in pos]  # no edge: a small centre ring
    for i, user in enumerate(lonely):
        a = 2 * math.pi * i / len(lonely)
        pos[user] = np.array([0.12 * math.cos(a), 0.12 * math.sin(a)])
    return pos


@dataclass(frozen=True)
class EdgeStrokes:
    """How the drawn edges were stroked: the score range and the widest, darkest line."""

    low: float
    high: float
    max_width: float
    max_alpha: float


def _draw_edges(ax: Any, graph: nx.Graph, pos: dict[str, np.ndarray],
                edge_list: list[tuple[str, str]], scores: np.ndarray) -> EdgeStrokes:
    """Edges wider and darker the higher their score, relative to the drawn ones."""
    low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 1.0)
    norm = (scores - low) / (high - low) if high > low else np.full(scores.shape, 0.5)
    dense = len(norm) > 200  # many edges: thinner and fainter, so the fans stay readable
    max_width, max_alpha = (1.8, 0.45) if dense else (2.8, 0.7)
    widths = 0.4 + (max_width - 0.4) * norm
    colours = [(*EDGE_COLOUR, 0.1 + (max_alpha - 0.1) * v) for v in norm]
    if edge_list:
        nx.draw_networkx_edges(
            graph, pos, edgelist=edge_list, width=widths, edge_color=colours, ax=ax
        )
    return EdgeStrokes(low, high, max_width, max_alpha)


def _label_products(ax: Any, pos: dict[str, np.ndarray], product_ids: list[str],
                    labels: tuple[str, ...], in_deg: np.ndarray) -> None:
    """Each product's id and in-degree just outside its node, away from the centre."""
    font = 12 if len(labels) <= 20 else 10 if len(labels) <= 40 else 8
    for pid, label, degree in zip(product_ids, labels, in_deg, strict=True):
        x, y = pos[pid]
        radius = math.hypot(x, y) or 1.0
        ax.text(
            x + 0.09 * x / radius, y + 0.09 * y / radius, f"{_short(label)} ({int(degree):,})",
            fontsize=font, fontweight="bold", zorder=5, parse_math=False,
            ha="left" if x > 0.15 else "right" if x < -0.15 else "center",
            va="bottom" if y > 0.15 else "top" if y < -0.15 else "center",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
        )


def _graph_legend(fig: Figure, users: int, products: int, lonely_drawn: int,
                  strokes: EdgeStrokes) -> None:
    lonely_handles = [
        Line2D([], [], marker="o", ls="", color=USER_COLOUR, ms=5,
               label=f"centre: {lonely_drawn:,} users with {NO_RECOMMENDATION}")
    ] if lonely_drawn else []
    fig.legend(
        handles=[
            Line2D([], [], marker="o", ls="", color=USER_COLOUR, ms=7,
                   label=f"user ({users:,} drawn)"),
            Line2D([], [], marker="o", ls="", color=PRODUCT_COLOUR, mec="black", ms=12,
                   label=f"product ({products:,} drawn), labelled: id (users recommended to)"),
            Line2D([], [], color=(*EDGE_COLOUR, strokes.max_alpha), lw=strokes.max_width,
                   label=f"highest score drawn ({strokes.high:.3f})"),
            Line2D([], [], color=(*EDGE_COLOUR, 0.1), lw=0.4,
                   label=f"lowest score drawn ({strokes.low:.3f})"),
            *lonely_handles,
        ],
        loc="outside lower center", ncols=1 if lonely_handles else 2, fontsize=11,
        frameon=False,
    )


def plot_graph(
    vertices: pd.DataFrame,
    edges: pd.DataFrame,
    path: Path,
    *,
    run_id: str = "",
    options: PlotOptions = DEFAULT_OPTIONS,
) -> GraphDrawing:
    """Draw the user -> product recommendation graph (or its documented sample) to ``path``."""
    sample = sample_graph(vertices, edges, options)
    pos = _layout(sample)
    graph = nx.Graph()
    graph.add_nodes_from(pos)
    edge_list = list(zip(sample.edges[EDGE_SRC], sample.edges[EDGE_DST], strict=True))
    graph.add_edges_from(edge_list)

    fig = Figure(figsize=options.graph_size, dpi=options.dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    strokes = _draw_edges(ax, graph, pos, edge_list, sample.edges[SCORE].to_numpy(dtype=float))
    user_ids = sample.users[VERTEX_ID].tolist()
    n_nodes = len(pos)
    user_size = float(np.clip(3000 / max(n_nodes, 1), 8, 60))
    nx.draw_networkx_nodes(
        graph, pos, nodelist=user_ids, node_size=user_size, node_color=USER_COLOUR,
        linewidths=0.4, edgecolors="white", ax=ax,
    )
    in_deg = sample.products[IN_DEGREE].to_numpy(dtype=float)
    scale = np.sqrt(in_deg / in_deg.max()) if in_deg.size and in_deg.max() > 0 else in_deg
    product_sizes = 150 + 650 * scale
    product_ids = sample.products[VERTEX_ID].tolist()
    nx.draw_networkx_nodes(
        graph, pos, nodelist=product_ids, node_size=product_sizes, node_color=PRODUCT_COLOUR,
        linewidths=1.0, edgecolors="black", ax=ax,
    )
    labels = tuple(sample.products[VERTEX_LABEL].tolist())
    _label_products(ax, pos, product_ids, labels, in_deg)
    if n_nodes:
        xs = np.array([p[0] for p in pos.values()])
        ys = np.array([p[1] for p in pos.values()])
        pad = 0.35
        ax.set_xlim(xs.min() - pad, xs.max() + pad)
        ax.set_ylim(ys.min() - pad, ys.max() + pad)
    ax.set_aspect("equal")
    lonely = users_without_recommendation(vertices)
    lonely_drawn = int((~sample.users[VERTEX_ID].isin(sample.edges[EDGE_SRC])).sum())
    _graph_legend(fig, len(user_ids), len(product_ids), lonely_drawn, strokes)
    title = f"Recommendation graph{f' — run {run_id}' if run_id else ''}"
    how = (
        "\nthe most recommended products; users added round-robin, each product's best-scored first"
        if sample.sampled else ""
    )
    ax.set_title(f"{title}\n{sample.caption()}{how}", fontsize=14)
    size = _save(fig, path, options.dpi)
    logger.info("graph: %s -> %s", sample.caption(), path)
    return GraphDrawing(
        path=path, size_px=size, users_drawn=len(user_ids), products_drawn=len(product_ids),
        edges_drawn=len(edge_list), total_users=sample.total_users,
        total_products=sample.total_products, total_edges=sample.total_edges,
        sampled=sample.sampled, product_labels=labels, title=title,
        users_without_recommendation=lonely,
    )


# --- degree distribution -----------------------------------------------------------------------


def concentration_text(metrics: Metrics) -> str:
    """The concentration figures of metrics.json's graph section, as the plot's annotation."""
    graph = metrics.graph
    if graph is None:
        return "no concentration figures in metrics.json"
    lines = []
    if graph.top1pct_edge_share is not None:
        lines.append(f"top 1% of products get {graph.top1pct_edge_share:.1%} of recommendations")
    if graph.gini_in_degree is not None:
        lines.append(f"Gini of product in-degree: {graph.gini_in_degree:.2f}")
    if graph.products:
        lines.append(
            f"{graph.products_recommended:,} of {graph.products:,} products recommended "
            f"({graph.products_recommended / graph.products:.0%})"
        )
    return "\n".join(lines) or "no concentration figures in metrics.json"


def plot_degrees(
    vertices: pd.DataFrame,
    metrics: Metrics,
    path: Path,
    *,
    options: PlotOptions = DEFAULT_OPTIONS,
) -> DegreeDrawing:
    """Users' out-degree histogram and products' in-degree rank plot, log where tails are long."""
    users, products = split_vertices(vertices)
    out_deg = users[OUT_DEGREE].to_numpy(dtype=np.int64)
    counts = np.bincount(out_deg) if out_deg.size else np.zeros(1, dtype=np.int64)
    present = np.flatnonzero(counts)
    in_deg = np.sort(products[IN_DEGREE].to_numpy(dtype=np.int64))[::-1]
    recommended = in_deg[in_deg > 0]
    never = int((in_deg == 0).sum())

    fig = Figure(figsize=options.degree_size, dpi=options.dpi, layout="constrained")
    left, right = fig.subplots(1, 2)
    user_log = long_tail(counts[present])
    left.bar(present, counts[present], width=0.8, color=USER_COLOUR)
    left.set_xlabel("recommendations received (out-degree)")
    left.set_ylabel("users")
    left.set_title(f"Users' out-degree ({len(users):,} users)")
    lonely = int(counts[0]) if out_deg.size else 0
    if lonely:
        left.text(0.02, 0.97, f"{lonely:,} users with out-degree 0 got\n"
                  + NO_RECOMMENDATION.replace(": ", ":\n", 1).replace(" every", "\nevery", 1),
                  transform=left.transAxes, ha="left", va="top", fontsize=10,
                  bbox={"boxstyle": "round", "fc": "white", "ec": BASELINE_COLOUR})
    if user_log:
        left.set_yscale("log")
    if present.size and present.size <= 30:
        left.set_xticks(present)
        left.set_xlim(present.min() - 2.5, present.max() + 2.5)

    product_log = long_tail(recommended)
    ranks = np.arange(1, recommended.size + 1)
    right.plot(ranks, recommended, color=PRODUCT_COLOUR, lw=2,
               marker="." if ranks.size < 60 else None)
    if product_log:
        right.set_xscale("log")
        right.set_yscale("log")
    top = max(1, math.ceil(0.01 * in_deg.size))
    if recommended.size:
        right.axvspan(0.8 if product_log else 0.5, top + 0.5, color=PRODUCT_COLOUR, alpha=0.15,
                      label=f"top 1% ({top:,} product{'s' if top > 1 else ''})")
        right.legend(loc="lower left")
    right.set_xlabel("product rank by in-degree" + (" (log)" if product_log else ""))
    right.set_ylabel("users recommended to (in-degree)" + (" (log)" if product_log else ""))
    never_note = f"; {never:,} never recommended" if never else ""
    right.set_title(  # two lines: one would be wider than the panel, cut off in the PNG
        f"Products' in-degree, rank/frequency\n({recommended.size:,} products{never_note})"
    )
    annotation = concentration_text(metrics)
    right.text(
        0.98, 0.97, annotation, transform=right.transAxes, ha="right", va="top", fontsize=11,
        bbox={"boxstyle": "round", "fc": "white", "ec": BASELINE_COLOUR},
    )
    for ax in (left, right):
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle("Degree distribution of the recommendation graph", fontsize=14)
    size = _save(fig, path, options.dpi)
    return DegreeDrawing(
        path=path, size_px=size,
        user_out_degree=tuple((int(d), int(counts[d])) for d in present),
        product_in_degree=tuple(int(v) for v in recommended),
        products_never_recommended=never, user_log_y=user_log, product_log=product_log,
        annotation=annotation, users_without_recommendation=lonely,
    )


# --- top products ------------------------------------------------------------------------------


def plot_top_products(
    vertices: pd.DataFrame, path: Path, *, options: PlotOptions = DEFAULT_OPTIONS
) -> TopProductsDrawing:
    """Horizontal bars of the most recommended products (in-degree), the first at the top."""
    top = ranked_products(vertices).head(options.top_n)
    labels = tuple(top[VERTEX_LABEL].tolist())
    values = tuple(int(v) for v in top[IN_DEGREE])
    fig = Figure(figsize=options.top_size, dpi=options.dpi, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    bars = ax.barh(y, values, color=PRODUCT_COLOUR, edgecolor="black", linewidth=0.5)
    ax.set_yticks(y, labels=[_literal(_short(label, 24)) for label in labels], fontsize=11)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=10)
    ax.set_xlabel("users the product is recommended to (in-degree)")
    ax.margins(x=0.12)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"Top {len(labels)} recommended products", fontsize=14)
    size = _save(fig, path, options.dpi)
    return TopProductsDrawing(path=path, size_px=size, labels=labels, values=values)


# --- quality over runs -------------------------------------------------------------------------


QUALITY_PANELS: tuple[str, ...] = (*METRIC_NAMES, *BEYOND_ACCURACY_NAMES)


def _points(values: np.ndarray) -> tuple[float | None, ...]:
    return tuple(None if np.isnan(v) else float(v) for v in values)


def _quality_panel(ax: Any, x: np.ndarray, model: np.ndarray, base: np.ndarray,
                   history: pd.DataFrame, current_run: str | None) -> None:
    """One metric over runs: the baseline's line, published and rejected runs, this run."""
    published = (history["status"] == PUBLISHED).to_numpy()
    rejected = (history["status"] == REJECTED).to_numpy()
    if np.isfinite(base).any():
        ax.plot(x, base, ls="--", marker="s", ms=4, color=BASELINE_COLOUR, label="baseline")
    else:
        ax.text(0.02, 0.04, "baseline: n/a", transform=ax.transAxes, color=BASELINE_COLOUR)
    ax.plot(x[published], model[published], marker="o", ms=6, color=MODEL_COLOUR,
            label="model (published)")
    if rejected.any():
        ax.plot(x[rejected], model[rejected], ls="", marker="X", ms=9,
                color=REJECTED_COLOUR, label="model (rejected)")
    current = (history["run_id"] == current_run).to_numpy() if current_run else None
    if current is not None and current.any():
        ax.plot(x[current], model[current], ls="", marker="o", ms=13, mfc="none",
                mec="black", mew=1.5, label="this run")
    ax.margins(y=0.15)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True, min_n_ticks=1))
    ax.set_xlabel("training run (number)")
    if len(history) == 1:  # one run: give the lone point some room
        ax.set_xlim(x[0] - 1.0, x[0] + 1.0)


def plot_quality(
    history: pd.DataFrame,
    path: Path,
    *,
    current_run: str | None = None,
    options: PlotOptions = DEFAULT_OPTIONS,
) -> QualityDrawing:
    """Model vs baseline for every run by its number (the manifest's sequence: runs are evenly
    spaced in events, not in time), then the beyond-accuracy figures of the model's lists;
    rejected runs as red crosses."""
    history = history.reset_index(drop=True)
    seq = history["sequence"].to_numpy(dtype=float)
    x = np.where(np.isnan(seq), np.arange(1, len(history) + 1, dtype=float), seq)
    ks = history["k"].dropna()
    k = int(ks.iloc[-1]) if len(ks) else 10
    missing = np.full(len(history), np.nan)

    fig = Figure(figsize=options.quality_size, dpi=options.dpi, layout="constrained")
    axes = fig.subplots(2, len(QUALITY_PANELS) // 2).ravel()
    model_points: dict[str, tuple[float | None, ...]] = {}
    baseline_points: dict[str, tuple[float | None, ...]] = {}
    for ax, name in zip(axes, QUALITY_PANELS, strict=True):
        model = history[f"model_{name}"].to_numpy(dtype=float)
        base = (history[f"baseline_{name}"].to_numpy(dtype=float)
                if f"baseline_{name}" in history else missing)
        model_points[name], baseline_points[name] = _points(model), _points(base)
        _quality_panel(ax, x, model, base, history, current_run)
        ax.set_title(METRIC_TITLES[name].format(k=k), fontsize=12)
    handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=11)
    n_pub = int((history["status"] == PUBLISHED).sum())
    n_rej = int((history["status"] == REJECTED).sum())
    fig.suptitle(
        f"Quality over runs: model vs popularity baseline (k={k}), then beyond accuracy — "
        f"{n_pub} published, {n_rej} rejected",
        fontsize=14,
    )
    size = _save(fig, path, options.dpi)
    return QualityDrawing(
        path=path, size_px=size, run_ids=tuple(history["run_id"]),
        statuses=tuple(history["status"]), x_axis="sequence", model=model_points,
        baseline=baseline_points,
    )
