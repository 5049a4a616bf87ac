"""The API server's pure parts: the fold-in math, top-n with exclusion, the served model's
answers, and the model swap (a rejected, half-written or corrupt run never replaces the served
one). No broker, no HTTP: tests/integration/test_serve.py runs the real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serve.files import open_results
from serve.foldin import FoldInParams, fold_in, gram, top_n
from serve.loading import load_run
from serve.manager import ModelManager, RunWatcher
from serve.metrics import ServeMetrics
from serve.model import SOURCE_FOLD_IN, SOURCE_MODEL, SOURCE_POPULAR, ServingModel
from tests.serve_fixtures import (
    Factors,
    publish_corrupt,
    publish_half_written,
    publish_run,
    random_factors,
)

REPO = Path(__file__).resolve().parents[2]


# --- fold-in math ------------------------------------------------------------------------------


@pytest.mark.parametrize("implicit", [True, False])
def test_fold_in_equals_the_direct_least_squares_solution(implicit: bool) -> None:
    rng = np.random.default_rng(1)
    items = rng.standard_normal((30, 4)).astype(np.float32)
    rows, units = np.array([3, 7, 11, 20]), np.array([1.0, 2.0, 5.0, 1.0])
    params = FoldInParams(implicit=implicit, alpha=1.5, reg_param=0.1)
    y = items.astype(np.float64)
    r = np.zeros(30)
    r[rows] = units
    if implicit:  # Hu, Koren & Volinsky: min Σ c_i (p_i - xᵀy_i)² + λ n_u |x|², over all items
        c, p = 1 + params.alpha * r, (r > 0).astype(float)
        direct = np.linalg.solve(y.T @ np.diag(c) @ y + 0.1 * 4 * np.eye(4), y.T @ (c * p))
    else:  # least squares on the bought items' ratings only
        direct = np.linalg.solve(y[rows].T @ y[rows] + 0.1 * 4 * np.eye(4), y[rows].T @ units)
    np.testing.assert_allclose(fold_in(items, gram(items), rows, units, params), direct,
                               rtol=1e-5, atol=1e-6)


def _reference_top(scores: np.ndarray, n: int, exclude: list[int]) -> list[int]:
    allowed = [i for i in range(len(scores)) if i not in set(exclude)]
    return sorted(allowed, key=lambda i: (-scores[i], i))[:n]


@pytest.mark.parametrize(("size", "n", "excluded"), [
    (10_000, 10, 0), (10_000, 10, 50), (10_000, 100, 3), (1_000, 127, 5), (300, 10, 2),
    (40, 10, 35), (5, 10, 0), (10_000, 200, 0),
])
def test_top_n_is_the_best_n_left_after_exclusion(size: int, n: int, excluded: int) -> None:
    rng = np.random.default_rng(size + n)
    scores = np.round(rng.standard_normal(size), 1).astype(np.float32)  # many ties
    exclude = rng.choice(size, excluded, replace=False).tolist()
    expected = _reference_top(scores, n, exclude)
    assert top_n(scores.copy(), n, np.array(exclude, dtype=np.int64)).tolist() == expected


# --- the served model ----------------------------------------------------------------------------


def _model(tmp_path: Path, factors: Factors) -> ServingModel:
    run_id = publish_run(tmp_path, 1, factors)
    return ServingModel(load_run(open_results(tmp_path), run_id), max_fold_in_users=100)


def _tiny() -> Factors:
    """Two users, five products on two axes: u0 likes p0-p2, u1 likes p3-p4."""
    items = np.array([[1, 0], [0.9, 0.1], [0.8, 0], [0, 1], [0.1, 0.9]], dtype=np.float32)
    users = np.array([[1, 0], [0, 1]], dtype=np.float32)
    return Factors(["u0", "u1"], users, [f"p{i}" for i in range(5)], items,
                   [("u0", "p0", 2.0), ("u1", "p3", 1.0), ("u2", "p4", 1.0)],
                   [("p3", 9), ("p0", 8), ("p4", 7)])


def test_a_known_user_gets_the_model_list_without_what_they_bought(tmp_path: Path) -> None:
    answer = _model(tmp_path, _tiny()).recommend("u0", 2)
    assert (answer.source, answer.product_ids) == (SOURCE_MODEL, ["p1", "p2"])


def test_a_user_with_purchases_but_no_vector_is_folded_in_at_load(tmp_path: Path) -> None:
    # u2's only pair was held out of training: no model vector, one purchase (p4, axis 2).
    answer = _model(tmp_path, _tiny()).recommend("u2", 1)
    assert (answer.source, answer.product_ids) == (SOURCE_FOLD_IN, ["p3"])


def test_an_unknown_user_gets_the_popular_list(tmp_path: Path) -> None:
    answer = _model(tmp_path, _tiny()).recommend("nobody", 2)
    assert (answer.source, answer.product_ids, answer.scores) == (
        SOURCE_POPULAR, ["p3", "p0"], [9.0, 8.0])


def test_a_new_users_purchase_folds_in_a_vector_and_leaves_the_list(tmp_path: Path) -> None:
    model = _model(tmp_path, _tiny())
    model.apply_purchase("new", "p0", 1)
    answer = model.recommend("new", 2)
    assert (answer.source, answer.product_ids) == (SOURCE_FOLD_IN, ["p1", "p2"])


def test_a_known_users_new_purchase_leaves_their_list(tmp_path: Path) -> None:
    model = _model(tmp_path, _tiny())
    model.recommend("u0", 1)  # ranked once before the purchase: that list must not be served
    model.apply_purchase("u0", "p1", 1)
    answer = model.recommend("u0", 1)
    assert (answer.source, answer.product_ids) == (SOURCE_FOLD_IN, ["p2"])


def test_a_users_lists_of_any_length_are_the_ones_ranked_afresh(tmp_path: Path) -> None:
    """The served model keeps a user's ranked list: shorter ones are its prefix, longer ones
    are ranked again, and each is what a model that never answered before would say."""
    factors = Factors(["u0"], np.array([[1.0, 0.5]], dtype=np.float32),
                      [f"p{i}" for i in range(40)],
                      np.random.default_rng(3).standard_normal((40, 2)).astype(np.float32),
                      [("u0", "p0", 1.0)], [("p1", 3)])
    served = _model(tmp_path / "served", factors)
    asked = [(n, served.recommend("u0", n)) for n in (10, 3, 25, 39, 50, 10)]
    fresh = [(n, _model(tmp_path / f"fresh-{i}", factors).recommend("u0", n))
             for i, (n, _) in enumerate(asked)]
    assert [(n, a.product_ids, list(a.scores)) for n, a in asked] == [
        (n, a.product_ids, [float(x) for x in a.scores]) for n, a in fresh]


def test_a_purchase_of_a_product_without_factors_leaves_the_popular_list(tmp_path) -> None:
    model = _model(tmp_path, _tiny())
    model.apply_purchase("new", "p-unknown", 1)
    model.apply_purchase("other", "p3", 1)
    popular = model.recommend("new", 2)
    assert (popular.source, popular.product_ids, model.recommend("other", 1).product_ids) == (
        SOURCE_POPULAR, ["p3", "p0"], ["p4"])


def test_similar_products_by_cosine_exclude_the_product_itself(tmp_path: Path) -> None:
    model = _model(tmp_path, _tiny())
    assert (model.similar("p0", 2).product_ids, model.similar("nope", 2)) == (["p2", "p1"], None)


# --- the swap ------------------------------------------------------------------------------------


def test_only_servable_runs_replace_the_served_one(tmp_path: Path) -> None:
    factors = random_factors(20, 15)
    manager = ModelManager(ServeMetrics())
    watcher = RunWatcher(open_results(tmp_path), manager.swap, ServeMetrics(),
                         max_fold_in_users=10, poll_seconds=1)
    steps = [watcher.check()]  # nothing published yet
    first = publish_run(tmp_path, 1, factors)
    steps += [watcher.check(), watcher.check()]
    held = manager.current  # a request in flight keeps its run whatever happens next
    publish_run(tmp_path, 2, factors, accepted=False)
    steps.append(watcher.check())
    publish_half_written(tmp_path, 3, factors)
    steps.append(watcher.check())
    publish_corrupt(tmp_path, 4, factors)
    steps += [watcher.check(), watcher.check()]  # refused once, not re-read at every poll
    served_meanwhile = manager.current.run_id
    last = publish_run(tmp_path, 5, factors)
    steps.append(watcher.check())
    assert (steps, held.run_id, served_meanwhile, manager.current.run_id) == (
        ["no_run", "loaded", "unchanged", "rejected", "invalid", "invalid", "waiting", "loaded"],
        first, first, last)


def test_a_loaded_run_has_every_users_list_ranked_ahead(tmp_path: Path) -> None:
    manager = ModelManager(ServeMetrics())
    watcher = RunWatcher(open_results(tmp_path), manager.swap, ServeMetrics(),
                         max_fold_in_users=10, poll_seconds=1, rank_ahead_n=4)
    publish_run(tmp_path, 1, random_factors(20, 15))
    watcher.check()
    assert (watcher.wait_ranked(60), manager.current._ahead_rows) == (
        True, len(manager.current.user_row))


# --- no Spark ------------------------------------------------------------------------------------

WITHOUT_SPARK = r"""
import importlib, pkgutil, sys

class NoSpark:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyspark", "spark_app", "py4j"):
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, NoSpark())
import serve
for info in pkgutil.walk_packages(serve.__path__, "serve."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
from recsys_contract.config import load_config
from serve.app import create_app
app = create_app(load_config(overrides=["serve.fold_in=false"]))
print(len(app.routes) > 5, "pyspark" in sys.modules)
"""


def test_the_server_works_without_pyspark() -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_SPARK], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout.split()[-2:]) == (0, ["True", "False"]), done.stderr


# --- where the fold-in of a new run starts ------------------------------------------------------


def test_a_runs_cut_comes_from_the_manifest_else_after_its_last_offsets() -> None:
    from serve.speed import cut_of
    from tests.serve_fixtures import manifest_for

    exact = manifest_for("r", 1, offsets={"0": [0, 99], "1": [0, 49]}, cut={"0": 90, "1": 50})
    approximate = manifest_for("r", 1, offsets={"0": [0, 99], "1": [0, 49]})
    assert (cut_of(exact, "sales"), cut_of(approximate, "sales"), cut_of(exact, "other"),
            cut_of(manifest_for("r", 1), "sales")) == ({0: 90, 1: 50}, {0: 100, 1: 50}, None, None)


def test_lists_ranked_ahead_are_the_ones_a_request_would_rank(tmp_path: Path, monkeypatch) -> None:
    """After rank_ahead, a request for n <= its width reads the list ranked ahead (ranking
    again is made to fail) and gets what a model that never ranked ahead says."""
    factors = Factors(["u0", "u1"], np.array([[1.0, 0.5], [-0.3, 0.9]], dtype=np.float32),
                      [f"p{i}" for i in range(40)],
                      np.random.default_rng(5).standard_normal((40, 2)).astype(np.float32),
                      [("u0", "p0", 1.0), ("u1", "p3", 2.0)], [("p1", 3)])
    served = _model(tmp_path / "served", factors)
    ranked = served.rank_ahead(12)
    monkeypatch.setattr(served, "_rank", None)  # a call would raise
    asked = [(u, n, served.recommend(u, n)) for u in ("u0", "u1") for n in (12, 5, 1)]
    fresh = _model(tmp_path / "fresh", factors)
    assert (ranked, [(u, n, a.source, a.product_ids, a.scores) for u, n, a in asked]) == (2, [
        (u, n, f.source, f.product_ids, [float(x) for x in f.scores])
        for u, n, _ in asked for f in [fresh.recommend(u, n)]])
