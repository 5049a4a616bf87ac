"""The HTML report and the CLI: relative links that resolve, named errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib import pyplot as plt

from tests.visualize_fixtures import png_size, write_rejected, write_run
from visualize.cli import main
from visualize.plots import PlotOptions
from visualize.report import render_run

REPO = Path(__file__).resolve().parents[2]
LOW_DPI = PlotOptions(dpi=30)  # these tests look at the page, not the pixels


class _Links(HTMLParser):
    """Collects <img src>, <a href> and the text of <td> cells."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values["src"] or "")
        elif tag == "a":
            self.links.append(values["href"] or "")
        self._in_cell = tag in ("td", "th")

    def handle_data(self, data: str) -> None:
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


def _parse(index: Path) -> _Links:
    parser = _Links()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def test_report_images_and_links_resolve_from_disk(tmp_path: Path) -> None:
    write_run(tmp_path, sequence=1)
    latest = write_run(tmp_path, sequence=2, parts=2)
    write_rejected(tmp_path, sequence=3)
    rendered = render_run(tmp_path, options=LOW_DPI)
    assert rendered.out_dir == tmp_path / "reports" / latest.run_id
    page = _parse(rendered.index)
    assert sorted(page.images) == ["degrees.png", "graph.png", "quality.png", "top_products.png"]
    for src in page.images:
        assert png_size(rendered.out_dir / src)
    data_links = [h for h in page.links if not h.endswith(".png")]
    assert {Path(unquote(h)).name for h in data_links} >= {
        "manifest.json", "metrics.json", "vertices.csv", "edges.csv", "popular.csv"
    }
    for href in data_links:
        assert not href.startswith("/") and "://" not in href
        assert (rendered.out_dir / unquote(href)).resolve().exists(), href
    assert (rendered.out_dir / data_links[0]).resolve().parent == latest.path.resolve()
    assert "NDCG@10" in page.cells
    assert f"{latest.metrics['model']['ndcg_at_k']:.4f}" in page.cells
    assert (tmp_path / "reports" / "latest").resolve() == rendered.out_dir.resolve()
    assert len(rendered.quality.run_ids) == 3
    assert plt.get_fignums() == []  # nothing left open in pyplot


def test_report_in_another_folder_links_back_to_the_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "results", sequence=1)
    out = tmp_path / "elsewhere" / "deep"
    rendered = render_run(tmp_path / "results", run.run_id, out, options=LOW_DPI)
    assert rendered.index == out / "index.html"
    hrefs = [h for h in _parse(rendered.index).links if h.endswith(".csv")]
    assert hrefs and all((out / h).resolve().is_file() for h in hrefs)
    assert not (tmp_path / "results" / "reports").exists()


def test_cli_renders_and_prints_the_index(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path, sequence=1)
    assert main(["--results", str(tmp_path), "--dpi", "40"]) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index == tmp_path / "reports" / run.run_id / "index.html"
    assert png_size(index.parent / "graph.png") == (480, 480)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing_results", "ResultsNotFoundError: results directory not found"),
        ("tmp_only", "NoPublishedRunError: no published run yet"),
        ("missing_run", "RunNotFoundError: run 20990101T000000Z-000001 not found"),
        ("no_metrics", "IncompleteRunError: run 20261127T101000Z-000001 is incomplete: "
                       "metrics.json is missing"),
        ("no_edges", "EmptyRunError: run 20261127T101000Z-000001 has no recommendation edges"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, setup: str, expected: str
) -> None:
    results = tmp_path / "results"
    argv = ["--results", str(results)]
    if setup == "tmp_only":
        write_run(results, sequence=1, publish=False)
    elif setup == "missing_run":
        write_run(results, sequence=1)
        argv += ["--run", "20990101T000000Z-000001"]
    elif setup == "no_metrics":
        (write_run(results, sequence=1).path / "metrics.json").unlink()
    elif setup == "no_edges":
        run = write_run(results, sequence=1)
        (run.path / "edges.csv").write_text("src,dst,score,rank\n")
        metrics = json.loads((run.path / "metrics.json").read_text())
        (run.path / "metrics.json").write_text(json.dumps({**metrics, "graph": None}))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("visualize: ")
    assert expected in err[-1]
    assert not any("Traceback" in line for line in err)


def test_module_entry_point_exits_2_without_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "visualize", "--results", str(tmp_path / "none")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("visualize: ResultsNotFoundError")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_visualizer_never_imports_pyspark() -> None:
    code = (
        "import sys, visualize.cli, visualize.report, visualize.watch; "
        "sys.exit('pyspark' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0


# --- defect 13 of issue 26: the quarantine by reason per run; users with no recommendation -----


def _quarantine_file(results: Path, batch: int, reasons: list[str], raw: pa.DataType) -> None:
    folder = results / "quarantine" / f"batch_id={batch}"
    folder.mkdir(parents=True, exist_ok=True)
    values = [b"{oops"] * len(reasons) if raw == pa.binary() else ["{oops"] * len(reasons)
    pq.write_table(pa.table({"raw_value": pa.array(values, raw), "reason": reasons}),
                   folder / f"part-{len(list(folder.iterdir()))}.parquet")


def _last_batch(run: Path, batch: int) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "last_batch_id": batch}))


def test_the_quarantine_is_counted_by_reason_per_run(tmp_path: Path) -> None:
    _last_batch(write_run(tmp_path, sequence=1).path, 2)
    _last_batch(write_run(tmp_path, sequence=2).path, 5)
    # before 2026-12-03 raw_value was text; later files hold bytes: both are counted
    _quarantine_file(tmp_path, 0, ["malformed_json", "empty_id:user_id"], pa.string())
    _quarantine_file(tmp_path, 2, ["empty_id:product_id"], pa.binary())
    _quarantine_file(tmp_path, 4, ["oversized", "oversized"], pa.binary())
    _quarantine_file(tmp_path, 7, ["malformed_json"], pa.binary())
    rendered = render_run(tmp_path, options=LOW_DPI)
    assert rendered.quarantine.to_dict("index") == {
        "run 1": {"empty_id": 2, "malformed_json": 1, "oversized": 0, "total": 3},
        "run 2": {"empty_id": 0, "malformed_json": 0, "oversized": 2, "total": 2},
        "since the last run": {"empty_id": 0, "malformed_json": 1, "oversized": 0, "total": 1},
    }
    assert "since the last run" in _parse(rendered.index).cells


def test_users_without_a_recommendation_are_explained(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1, n_users=30, n_products=12, recs_per_user=5).path
    edges = pd.read_csv(run / "edges.csv")
    lonely = ["u:U000003", "u:U000007"]
    kept = edges[~edges["src"].isin(lonely)]
    vertices = pd.read_csv(run / "vertices.csv", keep_default_na=False)
    vertices.loc[vertices["id"].isin(lonely), "out_degree"] = 0
    in_degree = kept["dst"].value_counts()
    products = vertices["type"] == "product"
    vertices.loc[products, "in_degree"] = (
        vertices.loc[products, "id"].map(in_degree).fillna(0).astype(int))
    kept.to_csv(run / "edges.csv", index=False)
    vertices.to_csv(run / "vertices.csv", index=False)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["graph"]["edges"] = len(kept)
    (run / "metrics.json").write_text(json.dumps(metrics))
    page = render_run(tmp_path, options=LOW_DPI).index.read_text(encoding="utf-8")
    assert ('id="no-recommendation">2 users got no recommendation' in page,
            "already bought every product" in page) == (True, True)


def test_the_run_shows_its_selection_candidates_and_beyond_accuracy(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    page = _parse(render_run(tmp_path, options=LOW_DPI).index)
    chosen, other = run.metrics["selection"]["candidates"]
    novelty = run.metrics["beyond_accuracy"]["novelty"]
    assert {f"{chosen['validation']:.4f}", f"{other['validation']:.4f}",
            "Novelty (bits, higher = rarer)", f"{novelty:.4f}"} <= set(page.cells)
