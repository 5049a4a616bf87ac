"""Model selection inside a run: it finds a better grid point than a poor default, judges it
on the training pairs only (a poisoned test split changes nothing in the choice), and a run
between selections reuses the last choice."""

from __future__ import annotations

from pathlib import Path

from recsys_contract.config import load_config
from spark_app.schema import EVENT_SCHEMA, PRODUCT_ID, QUANTITY, USER_ID
from spark_app.training import run_training
from spark_app.training.prepare import prepare
from spark_app.training.split import flag_held_out, split_flagged
from tests.training_data import events_df, planted_events, rated_events

# A poor default (over-regularised, rank 2) and a grid that holds it and a good point.
POOR = ("als.rank=2", "als.reg_param=5.0", "als.max_iter=8")
GRID = '[{rank: 2, reg_param: 5.0, alpha: 1.0}, {rank: 8, reg_param: 0.1, alpha: 1.0}]'


def _run(spark, rows, base: Path, *extra: str, sequence: int = 1):
    cfg = load_config(overrides=[f"paths.results={base / 'results'}",
                                 f"paths.state={base / 'state'}", *POOR,
                                 f"selection.grid={GRID}", "graph.pagerank_iterations=3",
                                 *extra])
    counts = {"training_set": len(rows), "total_valid": len(rows), "new_since_last_run": 0}
    return run_training(spark, events_df(spark, rows), cfg, sequence=sequence,
                        event_counts=counts)


def test_selection_beats_a_poor_default_on_the_test_split(spark, tmp_path) -> None:
    rows = planted_events()
    fixed = _run(spark, rows, tmp_path / "fixed", "selection.every_n_runs=0")
    selected = _run(spark, rows, tmp_path / "selected", "selection.every_n_runs=1")
    chosen = selected.metrics.selection.chosen
    assert (chosen["rank"], selected.metrics.model["ndcg_at_k"]
            >= fixed.metrics.model["ndcg_at_k"]) == (8, True)


def _poisoned(spark, rows, base: Path) -> list[tuple]:
    """The events, in the same order, with the quantity (explicit mode: the rating) of every
    held-out pair set absurdly high: the run's test split is changed, its training pairs are
    not (nor the id maps, which number the ids in the order they come)."""
    events = events_df(spark, rows)
    prepared = prepare(spark, events, base / "probe-maps")
    _, test = split_flagged(flag_held_out(prepared.pairs, "random", 0.2, 42))
    user_map, product_map = prepared.maps
    held = {(r[USER_ID], r[PRODUCT_ID]) for r in test.join(user_map, "user_idx")
            .join(product_map, "product_idx").select(USER_ID, PRODUCT_ID).collect()}
    quantity = EVENT_SCHEMA.fieldNames().index(QUANTITY)
    return [(*row[:quantity], 1000, *row[quantity + 1:]) if (row[1], row[2]) in held else row
            for row in rows]


def test_selection_never_reads_the_test_split(spark, tmp_path) -> None:
    rows = rated_events()
    explicit = ("als.implicit_prefs=false", "selection.every_n_runs=1")
    clean = _run(spark, rows, tmp_path / "clean", *explicit)
    poisoned = _run(spark, _poisoned(spark, rows, tmp_path), tmp_path / "poisoned", *explicit)
    figures = [[c.validation for c in run.metrics.selection.candidates]
               for run in (clean, poisoned)]
    assert (figures[0] == figures[1], clean.metrics.selection.chosen ==
            poisoned.metrics.selection.chosen,
            poisoned.metrics.model["rmse"] > 10 * clean.metrics.model["rmse"]) == (
        True, True, True)


def test_runs_between_selections_reuse_the_last_choice(spark, tmp_path) -> None:
    rows = planted_events(users=60, products=40)
    first = _run(spark, rows, tmp_path, "selection.every_n_runs=2", sequence=1)
    second = _run(spark, rows, tmp_path, "selection.every_n_runs=2", sequence=2)
    assert (second.metrics.selection.reused_from, second.metrics.selection.chosen,
            second.metrics.selection.candidates) == (
        first.run_id, first.metrics.selection.chosen, ())
