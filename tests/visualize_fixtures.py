"""Synthetic published runs (docs/run-format.md) for the visualizer's tests and benchmark.

Written with pandas and json only, the way the training stage publishes: into
``results/.tmp-<run_id>/``, renamed to ``results/runs/<run_id>/``, then ``results/latest``
replaced atomically. Product popularity is Zipf-like so in-degrees have a long tail, and the
top products by in-degree are known from the returned tables.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys_contract.runs import LATEST, format_latest
from visualize.ids import parse_visible_id

BASE_TIME = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
METRIC_NAMES = ("rmse", "precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "coverage")


@dataclass(frozen=True)
class FixtureRun:
    """What was written: the run directory and the tables, so tests know the right answer."""

    run_id: str
    path: Path
    vertices: pd.DataFrame
    edges: pd.DataFrame
    popular: pd.DataFrame
    manifest: dict[str, Any]
    metrics: dict[str, Any]


def run_id_for(sequence: int, created_at: datetime | None = None) -> str:
    """Run id per the contract: ``YYYYMMDDTHHMMSSZ-<seq:06d>``."""
    created = created_at or BASE_TIME + timedelta(minutes=10 * sequence)
    return f"{created:%Y%m%dT%H%M%SZ}-{sequence:06d}"


def make_tables(
    n_users: int, n_products: int, recs_per_user: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(vertices, edges, popular) of a synthetic recommendation graph; vectorised for 500k edges."""
    rng = np.random.default_rng(seed)
    recs = min(recs_per_user, n_products)
    weights = 1.0 / np.arange(1, n_products + 1) ** 0.9
    weights /= weights.sum()
    product_ids = np.array([f"P{i:05d}" for i in range(n_products)])
    user_ids = np.array([f"U{i:06d}" for i in range(n_users)])
    # Oversample products per user by popularity, keep the first `recs` distinct ones.
    draws = 4 * recs
    cand = pd.DataFrame(
        {
            "user": np.repeat(np.arange(n_users), draws),
            "product": rng.choice(n_products, size=n_users * draws, p=weights),
        }
    ).drop_duplicates()
    cand = cand.groupby("user", sort=False).head(recs)
    counts = cand.groupby("user").size().reindex(range(n_users), fill_value=0)
    extra = []
    for user in counts.index[counts.to_numpy() < recs]:
        have = set(cand.loc[cand["user"] == user, "product"])
        free = np.setdiff1d(np.arange(n_products), np.fromiter(have, dtype=int, count=len(have)))
        pick = rng.choice(free, size=recs - len(have), replace=False)
        extra.append(pd.DataFrame({"user": user, "product": pick}))
    pairs = pd.concat([cand, *extra], ignore_index=True).sort_values(["user"], kind="stable")
    scores = rng.uniform(0.05, 1.0, size=len(pairs))
    pairs = pairs.assign(score=scores).sort_values(
        ["user", "score"], ascending=[True, False], kind="stable"
    )
    pairs["rank"] = pairs.groupby("user").cumcount() + 1
    edges = pd.DataFrame(
        {
            "src": "u:" + pd.Series(user_ids[pairs["user"].to_numpy()]),
            "dst": "p:" + pd.Series(product_ids[pairs["product"].to_numpy()]),
            "score": np.round(pairs["score"].to_numpy(), 6),
            "rank": pairs["rank"].to_numpy(),
        }
    )
    in_degree = np.bincount(pairs["product"].to_numpy(), minlength=n_products)
    out_degree = np.bincount(pairs["user"].to_numpy(), minlength=n_users)
    pagerank = 0.15 / (n_users + n_products) + in_degree / max(in_degree.sum(), 1)
    users = pd.DataFrame(
        {
            "id": "u:" + pd.Series(user_ids),
            "type": "user",
            "label": user_ids,
            "in_degree": 0,
            "out_degree": out_degree,
            "pagerank": 0.15 / (n_users + n_products),
        }
    )
    products = pd.DataFrame(
        {
            "id": "p:" + pd.Series(product_ids),
            "type": "product",
            "label": product_ids,
            "in_degree": in_degree,
            "out_degree": 0,
            "pagerank": np.round(pagerank, 8),
        }
    )
    vertices = pd.concat([users, products], ignore_index=True)
    purchases = rng.poisson(weights * 50 * n_users) + 1
    order = np.argsort(-purchases, kind="stable")[: min(100, n_products)]
    popular = pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "product_id": product_ids[order],
            "purchases": purchases[order],
            "quantity": purchases[order] * 2,
        }
    )
    return vertices, edges, popular


def top_products(vertices: pd.DataFrame, n: int = 10) -> list[str]:
    """Labels of the top-n products by in-degree (ties by id): the expected bar order."""
    products = vertices[(vertices["type"] == "product") & (vertices["in_degree"] > 0)]
    ordered = products.sort_values(["in_degree", "id"], ascending=[False, True], kind="stable")
    return ordered["label"].head(n).tolist()


def quality(sequence: int, accepted: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, baseline) figures that improve with the sequence number."""
    gain = 0.02 * sequence if accepted else -0.05
    model = {
        "rmse": round(0.6 - 0.02 * sequence, 4),
        "precision_at_k": round(0.10 + gain, 4),
        "recall_at_k": round(0.20 + gain, 4),
        "ndcg_at_k": round(0.15 + gain, 4) if accepted else 0.09,
        "map_at_k": round(0.08 + gain, 4),
        "coverage": round(0.40 + gain, 4),
    }
    baseline = {
        "rmse": None,
        "precision_at_k": 0.08,
        "recall_at_k": 0.11,
        "ndcg_at_k": 0.12,
        "map_at_k": 0.05,
        "coverage": 0.03,
    }
    return model, baseline


def _write_csv(table: pd.DataFrame, path: Path, parts: int) -> None:
    """One CSV file, or a folder of ``parts`` part files each with the header (Spark's layout)."""
    if parts <= 0:
        table.to_csv(path, index=False)
        return
    path.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(table)), parts)):
        table.iloc[chunk].to_csv(path / f"part-{i:05d}-fixture-c000.csv", index=False)
    (path / "_SUCCESS").write_text("")


def _documents(
    run_id: str,
    sequence: int,
    created: datetime,
    vertices: pd.DataFrame,
    edges: pd.DataFrame,
    accepted: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, metrics) of a run, per the contract."""
    model, baseline = quality(sequence, accepted)
    n_users = int((vertices["type"] == "user").sum())
    n_products = int((vertices["type"] == "product").sum())
    in_deg = np.sort(vertices.loc[vertices["type"] == "product", "in_degree"].to_numpy())
    top = max(1, int(np.ceil(0.01 * len(in_deg))))
    share = float(in_deg[-top:].sum() / max(in_deg.sum(), 1))
    cum = np.cumsum(in_deg)
    gini = float(1 - 2 * (cum / max(cum[-1], 1)).sum() / len(in_deg) + 1 / len(in_deg))
    verdict = ">=" if accepted else "<"
    manifest = {
        "run_id": run_id,
        "sequence": sequence,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "accepted": accepted,
        "reason": f"model ndcg_at_k {model['ndcg_at_k']} {verdict} baseline 0.12 * (1 - 0.0)",
        "events": {
            "training_set": 10000 * sequence,
            "total_valid": 10000 * sequence,
            "new_since_last_run": 10000,
            "users": n_users,
            "products": n_products,
            "pairs": int(len(edges) * 1.4),
        },
        "window_events": 0,
        "kafka": {"topic": "sales", "offsets": {"0": [0, 10000 * sequence]}},
        "parameters": {
            "als": {"implicit_prefs": True, "rank": 10, "max_iter": 10, "reg_param": 0.1},
            "evaluation": {"split": "random", "k": 10, "accept_metric": "ndcg_at_k"},
            "recommend": {"top_n": 10, "exclude_purchased": True, "popular_n": 100},
            "graph": {"engine": "dataframe", "pagerank_iterations": 10},
        },
        "timings_seconds": {"prepare": 1.2, "split": 0.3, "fit": 4.1, "evaluate": 2.0,
                            "recommend": 3.0, "graph": 1.5, "export": 1.1, "total": 13.2},
        "spark": {"version": "4.2.0", "master": "local[2]"},
        "graph_engine": "dataframe",
    }
    metrics = {
        "k": 10,
        "split": "random",
        "test_users": int(n_users * 0.8),
        "model": model,
        "baseline": baseline,
        "accept_metric": "ndcg_at_k",
        "accept_margin": 0.0,
        "accepted": accepted,
        "graph": {
            "vertices": len(vertices),
            "edges": len(edges),
            "users": n_users,
            "products": n_products,
            "products_recommended": int((in_deg > 0).sum()),
            "top1pct_edge_share": round(share, 4),
            "gini_in_degree": round(gini, 4),
        },
        "beyond_accuracy": {
            "catalog_coverage": round(float((in_deg > 0).mean()), 4),
            "gini": round(gini, 4),
            "novelty": round(3.0 + 0.1 * sequence, 4),
            "intra_list_diversity": round(0.5 + 0.01 * sequence, 4),
        },
        "selection": {
            "metric": "ndcg_at_k",
            "chosen": {"rank": 10.0, "reg_param": 0.1, "alpha": 1.0},
            "validation_pairs": 500,
            "candidates": [
                {"parameters": {"rank": 10.0, "reg_param": 0.1, "alpha": 1.0},
                 "validation": 0.21, "fit_seconds": 1.5},
                {"parameters": {"rank": 20.0, "reg_param": 0.01, "alpha": 10.0},
                 "validation": 0.17, "fit_seconds": 2.5},
            ],
        },
    }
    return manifest, metrics


def write_run(
    results: Path,
    *,
    sequence: int = 1,
    n_users: int = 30,
    n_products: int = 12,
    recs_per_user: int = 5,
    seed: int = 0,
    created_at: datetime | None = None,
    parts: int = 0,
    publish: bool = True,
    update_latest: bool = True,
) -> FixtureRun:
    """Write one accepted run; ``publish=False`` leaves it as ``results/.tmp-<run_id>/``."""
    results = Path(results)
    created = created_at or BASE_TIME + timedelta(minutes=10 * sequence)
    run_id = run_id_for(sequence, created)
    vertices, edges, popular = make_tables(n_users, n_products, recs_per_user, seed + sequence)
    manifest, metrics = _documents(run_id, sequence, created, vertices, edges, True)
    tmp = results / f".tmp-{run_id}"
    tmp.mkdir(parents=True)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _write_csv(vertices, tmp / "vertices.csv", parts)
    _write_csv(edges, tmp / "edges.csv", parts)
    _write_csv(popular, tmp / "popular.csv", 0)
    path = tmp
    if publish:
        (results / "runs").mkdir(exist_ok=True)
        path = results / "runs" / run_id
        os.rename(tmp, path)
        if update_latest:
            point_latest(results, run_id)
    return FixtureRun(run_id, path, vertices, edges, popular, manifest, metrics)


def point_latest(results: Path, run_id: str) -> None:
    """Replace the ``results/latest`` pointer file atomically with one naming ``run_id``."""
    tmp = Path(results) / ".latest.tmp"
    tmp.write_text(format_latest(run_id))
    os.replace(tmp, Path(results) / LATEST)


def write_rejected(results: Path, *, sequence: int, n_users: int = 30) -> str:
    """Write ``results/rejected/<run_id>/`` (manifest and metrics only); returns the run id."""
    created = BASE_TIME + timedelta(minutes=10 * sequence)
    run_id = run_id_for(sequence, created)
    vertices, edges, _ = make_tables(n_users, 12, 5, sequence)
    manifest, metrics = _documents(run_id, sequence, created, vertices, edges, False)
    folder = Path(results) / "rejected" / run_id
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return run_id


def write_large_run(
    results: Path, *, n_users: int = 50_000, n_products: int = 10_000, recs_per_user: int = 10
) -> FixtureRun:
    """The benchmark's run: 50k users x 10 recommendations (500k edges) over 10k products."""
    return write_run(
        results, n_users=n_users, n_products=n_products, recs_per_user=recs_per_user, seed=7
    )


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR header; AssertionError if it is not a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR", f"{path} has no IHDR chunk first"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


class _ShownIds(HTMLParser):
    """The text of every id element (<bdi class="id">) of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "bdi" and ("class", "id") in attrs:
            self.ids.append("")
            self._inside = True

    def handle_endtag(self, tag: str) -> None:
        self._inside = self._inside and tag != "bdi"

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.ids[-1] += data


def shown_ids(page: str) -> list[str]:
    """The ids a report page shows, in order, as ids (visualize.ids' escapes undone)."""
    parser = _ShownIds()
    parser.feed(page)
    return [parse_visible_id(text) for text in parser.ids]
