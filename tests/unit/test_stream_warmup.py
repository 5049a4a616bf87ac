"""The training warm-up: one run on synthetic events that publishes nothing and leaves nothing,
and that a run becoming due cancels instead of waiting for."""

from __future__ import annotations

import logging
from pathlib import Path

from recsys_contract.config import AppConfig, load_config
from spark_app.storage import Storage
from spark_app.stream.ledger import Ledger, TrainingRecord
from spark_app.stream.warmup import WARMUP_DIR, WarmUp, remove_leftovers

DEADLINE_SECONDS = 300


def _config(base: Path, events: int) -> AppConfig:
    return load_config(overrides=[
        f"paths.results={base / 'results'}", f"paths.state={base / 'state'}",
        f"training.warmup_events={events}", "als.max_iter=3", "graph.pagerank_iterations=2",
        "selection.every_n_runs=0",
    ])


def _start(spark, cfg: AppConfig) -> WarmUp:
    warm = WarmUp.of(spark, cfg, cfg.paths.state, Storage(spark))
    assert warm is not None
    warm.start()
    return warm


def test_warm_up_trains_once_and_leaves_no_trace(spark, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="spark_app.stream.warmup")
    warm = _start(spark, _config(tmp_path, 3_000))
    assert warm.wait(DEADLINE_SECONDS), "the warm-up did not end"
    left = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()]
    assert ("training warm-up done" in caplog.text, left) == (True, [])


def test_a_due_run_cancels_the_warm_up_and_starts_at_once(spark, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="spark_app.stream.warmup")
    cfg = _config(tmp_path, 400_000)
    warm = _start(spark, cfg)
    seen: list[bool] = []

    def trainer(events, record, ledger):
        seen.append(warm.running())
        return "run", True

    record = TrainingRecord(sequence=1, first_seq=0, cut=10, trigger="threshold")
    answer = warm.before(trainer)(None, record, Ledger())
    scratch = Path(cfg.paths.state) / WARMUP_DIR
    assert (answer, seen, scratch.exists(), "warm-up cancelled" in caplog.text) == (
        ("run", True), [False], False, True)


def test_no_warm_up_when_switched_off(spark, tmp_path):
    assert WarmUp.of(spark, _config(tmp_path, 0), str(tmp_path), Storage(spark)) is None


def test_a_killed_warm_ups_scratch_is_removed_at_the_next_start(spark, tmp_path):
    left = tmp_path / "state" / WARMUP_DIR / "results" / "runs" / "half"
    left.mkdir(parents=True)
    (left / "part-0").write_text("x")
    remove_leftovers(Storage(spark), str(tmp_path / "state"))
    assert (tmp_path / "state" / WARMUP_DIR).exists() is False
