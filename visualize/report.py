"""Render a run: the four PNGs and an index.html that works from disk (file://, no server).

Images and CSV links are relative, so the report folder can be opened straight from disk; the
default folder is ``results/reports/<run_id>/`` (published runs are immutable, so the report
is kept beside them, not inside them) and ``results/reports/latest`` points to the newest.
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_contract.runs import (
    BEYOND_ACCURACY_NAMES,
    CSV_FILES,
    LATEST,
    MANIFEST,
    METRIC_NAMES,
    METRICS,
    Manifest,
    Metrics,
)
from visualize.ids import visible_id
from visualize.loading import (
    RECOMMENDATIONS,
    Run,
    csv_parts,
    describe_sizes,
    load_history,
    load_run,
    relative_link,
    resolve_run,
)
from visualize.plots import (
    DEFAULT_OPTIONS,
    METRIC_TITLES,
    NO_RECOMMENDATION,
    DegreeDrawing,
    GraphDrawing,
    PlotOptions,
    QualityDrawing,
    TopProductsDrawing,
    plot_degrees,
    plot_graph,
    plot_quality,
    plot_top_products,
)
from visualize.quarantine import TOTAL, counts_by_run, quarantine_counts

logger = logging.getLogger(__name__)

REPORTS_DIR = "reports"
INDEX = "index.html"
GRAPH_PNG = "graph.png"
DEGREES_PNG = "degrees.png"
TOP_PNG = "top_products.png"
QUALITY_PNG = "quality.png"


@dataclass(frozen=True)
class Rendered:
    """One rendered report: where it is, what each picture shows, and how long each step took."""

    run_id: str
    out_dir: Path
    index: Path
    graph: GraphDrawing
    degrees: DegreeDrawing
    top_products: TopProductsDrawing
    quality: QualityDrawing
    seconds: dict[str, float]
    # quarantined records by reason code (columns, then total), one row per run (see
    # visualize.quarantine.counts_by_run)
    quarantine: pd.DataFrame = field(default_factory=pd.DataFrame)


def default_out_dir(results: Path, run_id: str) -> Path:
    """``results/reports/<run_id>/``: the report of a run unless --out says otherwise."""
    return Path(results) / REPORTS_DIR / run_id


def render_run(
    results: Path,
    run: str = LATEST,
    out: Path | None = None,
    *,
    options: PlotOptions = DEFAULT_OPTIONS,
) -> Rendered:
    """Read run ``run`` (an id or "latest") from ``results``, draw it, and write the report."""
    results = Path(results)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    loaded = load_run(resolve_run(results, run))
    history = load_history(results)
    quarantine = counts_by_run(quarantine_counts(results), history)
    seconds["read"] = time.perf_counter() - started
    default = out is None
    out_dir = Path(out) if out is not None else default_out_dir(results, loaded.run_id)
    out_dir.mkdir(parents=True, exist_ok=True)

    def timed(name: str, draw: Any, *args: Any, **kwargs: Any) -> Any:
        begin = time.perf_counter()
        drawing = draw(*args, **kwargs)
        seconds[name] = time.perf_counter() - begin
        return drawing

    graph = timed("graph", plot_graph, loaded.vertices, loaded.edges, out_dir / GRAPH_PNG,
                  run_id=loaded.run_id, options=options)
    degrees = timed("degrees", plot_degrees, loaded.vertices, loaded.metrics,
                    out_dir / DEGREES_PNG, options=options)
    top = timed("top_products", plot_top_products, loaded.vertices, out_dir / TOP_PNG,
                options=options)
    quality = timed("quality", plot_quality, history, out_dir / QUALITY_PNG,
                    current_run=loaded.run_id, options=options)
    begin = time.perf_counter()
    index = out_dir / INDEX
    page = build_html(loaded, out_dir, graph, degrees, top, quality, quarantine)
    tmp = out_dir / f".{INDEX}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)  # the page appears whole, after its images
    if default:
        _point_reports_latest(results, loaded.run_id)
    seconds["html"] = time.perf_counter() - begin
    seconds["total"] = time.perf_counter() - started
    logger.info("report of run %s written to %s in %.2f s", loaded.run_id, index,
                seconds["total"])
    return Rendered(loaded.run_id, out_dir, index, graph, degrees, top, quality, seconds,
                    quarantine)


def _point_reports_latest(results: Path, run_id: str) -> None:
    """Replace ``results/reports/latest`` atomically with a link to the newest report."""
    reports = Path(results) / REPORTS_DIR
    link = reports / LATEST
    tmp = reports / f".{LATEST}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_id)
    os.replace(tmp, link)


# --- HTML --------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1280px; padding: 1rem 1.5rem; color: #1d2330; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; font-size: 1.2rem; }
.sub { color: #5a6270; margin-top: 0; }
.badge { display: inline-block; padding: .1rem .5rem; border-radius: .6rem; font-size: .85rem;
         color: white; } .ok { background: #2e7d32; } .bad { background: #c0392b; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .92rem; }
th, td { border-bottom: 1px solid #d9dde3; padding: .25rem .7rem; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.accept td { font-weight: 600; background: #eef5ff; }
.grid { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
img[alt="recommendation graph"] { max-width: min(100%, 960px); }
figcaption { color: #5a6270; font-size: .9rem; }
.up { color: #2e7d32; } .down { color: #c0392b; }
.id { white-space: pre; }
footer { margin-top: 2rem; color: #8a909a; font-size: .8rem; }
"""


def _e(value: object) -> str:
    """HTML-escaped text of a value."""
    return html.escape(str(value), quote=True)


def _id(value: str) -> str:
    """An id for the page: invisible characters shown as escapes (visualize.ids), markup
    escaped, isolated from the text around it (a right-to-left id cannot reorder the page)."""
    return f'<bdi class="id">{_e(visible_id(value))}</bdi>'


def _fmt(value: object, digits: int = 4) -> str:
    """An escaped table cell: floats rounded, ints with separators, None as an en dash."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _table(rows: list[tuple[object, ...]], head: tuple[str, ...], numeric_from: int = 1,
           row_class: Mapping[int, str] | None = None) -> str:
    """An HTML table; columns from ``numeric_from`` on are right-aligned."""
    cls = row_class or {}

    def cell(i: int, v: object, tag: str) -> str:
        num = ' class="num"' if i >= numeric_from else ""
        return f"<{tag}{num}>{v}</{tag}>"

    out = ["<table>", "<tr>" + "".join(cell(i, _e(h), "th") for i, h in enumerate(head)) + "</tr>"]
    for n, row in enumerate(rows):
        klass = f' class="{cls[n]}"' if n in cls else ""
        out.append(f"<tr{klass}>" + "".join(cell(i, v, "td") for i, v in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dict -> sorted (dotted.key, value) pairs, for the parameters table."""
    pairs: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            pairs += _flatten(value, name + ".")
        else:
            pairs.append((name, value))
    return pairs


def metrics_rows(metrics: Metrics) -> list[tuple[str, object, object, object]]:
    """(metric, model, baseline, model - baseline) for the model-vs-baseline table."""
    rows = []
    for name in METRIC_NAMES:
        m, b = metrics.model.get(name), metrics.baseline.get(name)
        diff = m - b if m is not None and b is not None else None
        rows.append((METRIC_TITLES[name].format(k=metrics.k), m, b, diff))
    return rows


def _metrics_table(metrics: Metrics) -> str:
    """The model vs baseline table, the acceptance metric's row highlighted."""
    rows, classes = [], {}
    for n, (name, (title, m, b, diff)) in enumerate(zip(METRIC_NAMES, metrics_rows(metrics),
                                                         strict=True)):
        better = None if diff is None else (diff < 0 if name == "rmse" else diff > 0)
        arrow = "" if better is None else (' class="up"' if better else ' class="down"')
        shown = "–" if diff is None else f"<span{arrow}>{diff:+.4f}</span>"
        rows.append((_e(title), _fmt(m), _fmt(b), shown))
        if name == metrics.accept_metric:
            classes[n] = "accept"
    return _table(rows, ("metric", "model", "baseline", "model − baseline"), row_class=classes)


def _beyond_table(metrics: Metrics) -> str:
    """The run's beyond-accuracy figures (of every served list), or a note if it has none."""
    if metrics.beyond_accuracy is None:
        return '<p class="sub">This run has no beyond-accuracy figures.</p>'
    figures = asdict(metrics.beyond_accuracy)
    return _table([(_e(METRIC_TITLES[name]), _fmt(figures.get(name)))
                   for name in BEYOND_ACCURACY_NAMES], ("beyond accuracy", "model"))


def _selection_section(metrics: Metrics) -> str:
    """The candidates the run's model selection tried on its validation pairs, the chosen one
    highlighted; or which run's choice was reused; or nothing when selection is off."""
    chosen = metrics.selection
    if chosen is None:
        return '<p class="sub">Model selection is off: the configured ALS settings were fitted.</p>'
    settings = ", ".join(f"{_e(k)} {_fmt(v)}" for k, v in chosen.chosen.items())
    if not chosen.candidates:
        return (f'<p class="sub">Settings {settings} reused from run '
                f"{_e(chosen.reused_from or '–')} (selection runs every few runs).</p>")
    names = sorted({name for c in chosen.candidates for name in c.parameters})
    rows, classes = [], {}
    for n, candidate in enumerate(chosen.candidates):
        rows.append((*(_fmt(candidate.parameters.get(name)) for name in names),
                     _fmt(candidate.validation), _fmt(candidate.fit_seconds, 2)))
        if candidate.parameters == chosen.chosen:
            classes[n] = "accept"
    note = (f'<p class="sub">{len(chosen.candidates)} candidates tried on '
            f"{_fmt(chosen.validation_pairs)} validation pairs carved from the training pairs "
            f"(never the test pairs), judged by {_e(chosen.metric)}; chosen: {settings}.</p>")
    return note + _table(rows, (*names, f"validation {chosen.metric}", "fit seconds"),
                         numeric_from=0, row_class=classes)


def _metrics_note(metrics: Metrics) -> str:
    """What decided the verdict: ranking metrics (implicit) or the RMSE on ratings (explicit)."""
    judged = ("RMSE on the held-out ratings against the bias baseline (global mean plus user "
              "and product biases) decides; the ranking metrics are shown for comparison"
              if metrics.feedback == "explicit" else
              "RMSE is a sanity figure (implicit preferences), the ranking metrics are the measure")
    return (f'<p class="sub">k = {_e(metrics.k)}, split {_e(metrics.split)}, '
            f"{_fmt(metrics.test_users)} test users; acceptance metric "
            f"{_e(metrics.accept_metric)} with margin {_e(metrics.accept_margin)}. {judged}.</p>")


def _figure(src: str, alt: str, caption: str, drawing_size: tuple[int, int]) -> str:
    """A <figure> with a relative image; width/height attributes keep the layout stable."""
    w, h = drawing_size
    return (f'<figure><a href="{_e(src)}"><img src="{_e(src)}" alt="{_e(alt)}" width="{w}" '
            f'height="{h}"></a><figcaption>{_e(caption)}</figcaption></figure>')


def _files_table(run: Run, out_dir: Path) -> str:
    """Relative links to the run's JSON and CSV files (a part folder links to the folder)."""
    rows = []
    for name in (MANIFEST, METRICS, *CSV_FILES, RECOMMENDATIONS):
        path = run.path / name
        if not path.exists():
            continue
        href = relative_link(path, out_dir) + ("/" if path.is_dir() else "")
        parts = csv_parts(path) if name.endswith(".csv") else [path]
        what = f"folder of {len(parts)} part files" if path.is_dir() else "file"
        rows.append((f'<a href="{_e(href)}">{_e(name)}</a>', _e(what),
                     f"{describe_sizes(parts) / 1e6:,.2f} MB"))
    return _table(rows, ("file", "kind", "size"), numeric_from=2)


def _no_recommendation_note(users: int, parameters: Mapping[str, Any]) -> str:
    """Why some users have out-degree 0, or nothing when every user got recommendations."""
    if not users:
        return ""
    recommend = parameters.get("recommend")
    excluded = isinstance(recommend, Mapping) and recommend.get("exclude_purchased") is True
    why = (NO_RECOMMENDATION.partition(": ")[2] + " (recommend.exclude_purchased leaves out what "
           "a user bought)") if excluded else "the model scored no product for them"
    return (f'<p class="sub" id="no-recommendation">{users:,} users got no recommendation '
            f"(out-degree 0, in the centre of the graph when it is drawn whole): {_e(why)}. "
            "Users the model does not know are served the popular list (popular.csv).</p>")


def _quarantine_section(table: pd.DataFrame | None) -> str:
    """Quarantined records by reason code, per run (rows) — see visualize.quarantine."""
    if table is None or table.empty or int(table[TOTAL].sum()) == 0:
        return '<p class="sub">No record was quarantined.</p>'
    codes = [c for c in table.columns if c != TOTAL]
    rows = [(_e(label), *(_fmt(int(v)) for v in row)) for label, row in
            zip(table.index, table[[*codes, TOTAL]].to_numpy().tolist(), strict=True)]
    note = ('<p class="sub">Records the streaming job quarantined (results/quarantine/, one '
            "row per bad record with its raw bytes, readable with any Parquet reader), counted "
            "in the micro-batches up to each run's start, after the run before it.</p>")
    return note + _table(rows, ("quarantined", *codes, TOTAL))


def _manifest_section(man: Manifest) -> str:
    """The manifest's events, stage timings, parameters and sources, side by side."""
    return "\n".join((
        '<div class="grid">',
        _table([(_e(k), _fmt(v)) for k, v in asdict(man.events).items()]
               + [("window_events", _fmt(man.window_events))], ("events", "count")),
        _table([(_e(k), _fmt(v, 2)) for k, v in man.timings_seconds.items()],
               ("stage", "seconds")),
        _table([(_e(k), _fmt(v)) for k, v in _flatten(man.parameters)], ("parameter", "value")),
        _table([("topic", _e(man.kafka.topic))]
               + [(f"partition {_e(p)}", _e(v)) for p, v in man.kafka.offsets.items()]
               + [(f"spark {_e(k)}", _e(v)) for k, v in man.spark.items()]
               + [("graph engine", _e(man.graph_engine or "–"))], ("source", "value")),
        "</div>",
    ))


def build_html(
    run: Run,
    out_dir: Path,
    graph: GraphDrawing,
    degrees: DegreeDrawing,
    top: TopProductsDrawing,
    quality: QualityDrawing,
    quarantine: pd.DataFrame | None = None,
) -> str:
    """The report page of one run: pictures, metrics, manifest and links to the data."""
    m, man = run.metrics, run.manifest
    badge = ('<span class="badge ok">accepted</span>' if man.accepted
             else '<span class="badge bad">rejected</span>')
    graph_figures = asdict(m.graph) if m.graph is not None else {}
    popular = run.popular.sort_values("rank").head(len(top.labels) or 10)
    top_rows = [
        (str(i + 1), _id(label), _fmt(value),
         _id(popular["product_id"].iloc[i]) if i < len(popular) else "–")
        for i, (label, value) in enumerate(zip(top.labels, top.values, strict=True))
    ]
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Run {_e(run.run_id)} · recommendation report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Recommendation run {_e(run.run_id)} {badge}</h1>",
        f'<p class="sub">created {_e(man.created_at)} · training run '
        f'#{_e(man.sequence)} · {_e(man.reason)}</p>',
        '<h2 id="metrics">Model vs baseline</h2>',
        _metrics_note(m),
        _metrics_table(m),
        '<h2 id="beyond">Beyond accuracy</h2>',
        _beyond_table(m),
        '<h2 id="selection">Model selection</h2>',
        _selection_section(m),
        '<h2 id="quality">Quality over runs</h2>',
        _figure(QUALITY_PNG, "quality over runs",
                f"{len(quality.run_ids)} runs ({quality.statuses.count('rejected')} rejected), "
                "by training run number (the manifest's sequence)", quality.size_px),
        '<h2 id="quarantine">Quarantined records by reason</h2>',
        _quarantine_section(quarantine),
        '<h2 id="graph">Recommendation graph</h2>',
        _figure(GRAPH_PNG, "recommendation graph", graph.title + ": " + (
            f"sample of {graph.products_drawn:,} of {graph.total_products:,} products and "
            f"{graph.users_drawn:,} of {graph.total_users:,} users "
            f"({graph.edges_drawn:,} of {graph.total_edges:,} recommendations)"
            if graph.sampled else
            f"all {graph.total_products:,} products, {graph.total_users:,} users"), graph.size_px),
        _table([(_e(k), _fmt(v)) for k, v in graph_figures.items()], ("graph", "value")),
        '<h2 id="degrees">Degree distribution</h2>',
        _figure(DEGREES_PNG, "degree distribution", degrees.annotation.replace("\n", "; "),
                degrees.size_px),
        _no_recommendation_note(degrees.users_without_recommendation, man.parameters),
        '<h2 id="top">Top recommended products</h2>',
        '<div class="grid">',
        _figure(TOP_PNG, "top recommended products",
                f"top {len(top.labels)} products by in-degree", top.size_px),
        _table(top_rows, ("#", "recommended (by in-degree)", "users", "popular list, same rank"),
               numeric_from=2),
        "</div>",
        '<h2 id="manifest">Manifest</h2>',
        _manifest_section(man),
        '<h2 id="files">Data</h2>',
        _files_table(run, out_dir),
        f"<footer>Rendered {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC by visualize from "
        f"{_e(run.path)}.</footer>",
        "</body></html>",
    ]
    return "\n".join(sections) + "\n"

