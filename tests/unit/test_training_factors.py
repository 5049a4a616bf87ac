"""Factors: the run's factors/ tables hold the model's vectors under the raw ids, and the API
server's fold-in gives back the model's own vector of a user it trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys_contract.runs import (
    FACTORS_DIR,
    ITEM_FACTORS,
    PURCHASED_QUANTITY,
    PURCHASES_PARQUET,
    USER_FACTORS,
    VECTOR,
    EventCounts,
    KafkaSpan,
    Manifest,
    Metrics,
)
from serve.foldin import FoldInParams, fold_in, gram
from spark_app.schema import PRODUCT_ID, PRODUCT_IDX, RATING, USER_ID, USER_IDX
from spark_app.training.als import build_als, fit_als
from spark_app.training.export import RunDraft
from spark_app.training.factors import write_factors
from spark_app.training.prepare import attach_indices, pairs_by_user, update_id_maps
from tests.run_paths import local
from tests.training_data import events_df, planted_events

ALS = {"rank": 3, "max_iter": 8, "reg_param": 0.1, "alpha": 2.0}
METRICS = Metrics(k=10, split="random", test_users=1, model={}, baseline={},
                  accept_metric="ndcg_at_k", accept_margin=0.0, accepted=True)
MANIFEST = Manifest(run_id="run-1", sequence=1, created_at="2026-12-03T00:00:00Z",
                    accepted=True, reason="test", events=EventCounts(1, 1, 1), window_events=0,
                    kafka=KafkaSpan("sales"))


@pytest.fixture(scope="module")
def written(spark, tmp_path_factory):
    """A model fitted on planted data, its id maps and pairs, and the run it was written to."""
    tmp = tmp_path_factory.mktemp("factors")
    events = events_df(spark, planted_events(users=40, products=24, events_per_user=6))
    user_map, product_map = update_id_maps(spark, events, tmp / "id_map")
    pairs = pairs_by_user(attach_indices(events, user_map, product_map)).cache()
    als = build_als(**ALS, implicit_prefs=True, seed=3, num_blocks=2)
    model = fit_als(pairs, als)
    with RunDraft(tmp / "results", "run-1") as draft:
        write_factors(draft, model, user_map, product_map, pairs)
        path = draft.publish(METRICS, MANIFEST)
    return model, user_map, product_map, pairs, local(path) / FACTORS_DIR


def _vectors(path: Path, id_col: str) -> dict[str, list[float]]:
    table = pq.read_table(path)
    return dict(zip(table.column(id_col).to_pylist(), table.column(VECTOR).to_pylist(),
                    strict=True))


def test_the_factors_written_are_the_models_under_the_raw_ids(written) -> None:
    model, user_map, product_map, pairs, factors = written
    users = {r[USER_ID]: r["features"] for r in model.userFactors.join(
        user_map, model.userFactors.id == user_map[USER_IDX]).collect()}
    items = {r[PRODUCT_ID]: r["features"] for r in model.itemFactors.join(
        product_map, model.itemFactors.id == product_map[PRODUCT_IDX]).collect()}
    bought = {(r[USER_ID], r[PRODUCT_ID]): r[RATING] for r in pairs.join(user_map, USER_IDX)
              .join(product_map, PRODUCT_IDX).collect()}
    table = pq.read_table(factors / PURCHASES_PARQUET).to_pylist()
    written_bought = {(r[USER_ID], r[PRODUCT_ID]): r[PURCHASED_QUANTITY] for r in table}
    assert (_vectors(factors / USER_FACTORS, USER_ID), _vectors(factors / ITEM_FACTORS,
            PRODUCT_ID), written_bought) == (users, items, bought)


def test_folding_in_a_trained_users_purchases_gives_back_the_models_vector(written) -> None:
    # Spark's last ALS step solves each user against the final item factors: the fold-in
    # of the same purchases must reach the same vector (float32 rounding aside).
    _, _, _, _, factors = written
    items = _vectors(factors / ITEM_FACTORS, PRODUCT_ID)
    product_ids = sorted(items)
    matrix = np.array([items[p] for p in product_ids], dtype=np.float32)
    row = {p: i for i, p in enumerate(product_ids)}
    params = FoldInParams(implicit=True, alpha=ALS["alpha"], reg_param=ALS["reg_param"])
    bought: dict[str, list[tuple[int, float]]] = {}
    for r in pq.read_table(factors / PURCHASES_PARQUET).to_pylist():
        bought.setdefault(r[USER_ID], []).append((row[r[PRODUCT_ID]], r[PURCHASED_QUANTITY]))
    users = _vectors(factors / USER_FACTORS, USER_ID)
    folded = {
        user: fold_in(matrix, gram(matrix), np.array([p for p, _ in pairs]),
                      np.array([q for _, q in pairs]), params)
        for user, pairs in bought.items()
    }
    worst = max(np.abs(folded[u] - np.array(v)).max() / np.abs(v).max() for u, v in users.items())
    assert worst < 1e-4
