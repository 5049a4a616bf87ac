"""One training run: prepare -> split -> fit -> score -> evaluate -> accept or reject ->
recommend -> graph -> export. `run_training` only wires the stages; each stage is a function of
plain values (settings.py turns the config into them once) returning a small typed result.

The streaming job calls run_training() when its threshold is reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_contract.config import AppConfig
from recsys_contract.runs import (
    EDGES_CSV,
    POPULAR_CSV,
    VERTICES_CSV,
    Metrics,
    Selection,
    make_run_id,
)
from spark_app.schema import PRODUCT_IDX, USER_IDX
from spark_app.session import graphframes_jar_loaded
from spark_app.storage import Storage, join
from spark_app.training.als import build_als, fit_als, resolve_blocks
from spark_app.training.documents import manifest_of, metrics_of, with_graph
from spark_app.training.evaluate import bias_baseline_rmse, decide, decide_by_rmse
from spark_app.training.export import RunDraft, clean_stale_tmp, export_rejected
from spark_app.training.factors import write_factors
from spark_app.training.graph import build_edges, build_graph, choose_engine, self_information
from spark_app.training.prepare import prepare
from spark_app.training.recommend import named_recommendations, published_popular
from spark_app.training.scoring import (
    Evaluation,
    evaluation_of,
    item_vectors,
    recommendations_of,
    score_users,
    scoring_chunks,
    user_vectors,
)
from spark_app.training.selection import TUNED, load_choice, save_choice, select
from spark_app.training.settings import AlsSettings, RunSettings
from spark_app.training.split import BUYERS, Split, split_stage

log = logging.getLogger(__name__)

ID_MAP_DIR = "id_map"


@dataclass(frozen=True)
class TrainingOutcome:
    """What one run did: published (accepted) or recorded as rejected, and where."""

    run_id: str
    accepted: bool
    reason: str
    path: str  # URI of the run's folder
    metrics: Metrics


def run_training(
    spark: SparkSession,
    events: DataFrame,
    cfg: AppConfig,
    *,
    sequence: int,
    event_counts: dict[str, int],
    kafka_offsets: dict[str, list[int]] | None = None,
    last_batch_id: int | None = None,
    seq_range: tuple[int, int] | None = None,
    storage: Storage | None = None,
) -> TrainingOutcome:
    """Train, evaluate against the popularity baseline, and publish or reject one run.

    `seq_range`: the events' [first_seq, cut), recorded in the manifest so that a restart
    finds this sequence's run again (export.find_published) instead of publishing it twice.
    """
    storage = storage or Storage(spark)
    s = RunSettings.from_config(cfg)
    s = replace(s, results=storage.qualify(s.results), state=storage.qualify(s.state))
    clock, created = StageClock(), datetime.now(UTC)
    run_id = make_run_id(sequence, created)
    log.info("training run %s on %s events", run_id, event_counts.get("training_set"))
    storage.mkdirs(s.results)
    clean_stale_tmp(storage, s.results)
    with CacheScope() as keep:
        warming = warm_python_workers_in_background(spark)
        with clock("prepare"):
            prepared = prepare(spark, events, join(s.state, ID_MAP_DIR), storage,
                               explicit_ratings=not s.als.implicit_prefs)
        with clock("split"):
            split = split_stage(prepared.pairs, s.split, keep)
        with clock("select"):
            als, selection = choose_als(split.train, s, sequence, run_id, spark, keep)
        with clock("fit"):
            model = fit(split.train, als, spark)
        with clock("evaluate"):
            warming.exception()  # waits for it (a failure was logged)
            scored = keep(score(model, split, s, top_n=0 if s.refit else s.top_n, spark=spark))
            evaluation = evaluation_of(scored, split.sizes.products)
            diversity = evaluation.intra_list_diversity
        evaluation, accepted, reason = judge(evaluation, split, s)
        log.info("run %s %s: %s", run_id, "accepted" if accepted else "REJECTED", reason)
        metrics = metrics_of(s, evaluation, accepted, selection)
        manifest = manifest_of(s, run_id, sequence, created, accepted, reason, event_counts,
                               split.sizes, kafka_offsets, clock.timings, spark, als,
                               last_batch_id, seq_range)
        if not accepted:
            clock.timings["total"] = clock.elapsed()
            path = export_rejected(storage, s.results, run_id, metrics=metrics,
                                   manifest=manifest)
            return TrainingOutcome(run_id, False, reason, path, metrics)
        if s.refit:
            with clock("refit"):
                model = fit(split.pairs, als, spark)
                scored = keep(score(model, split, s, top_n=s.top_n, spark=spark))
                diversity = evaluation_of(scored, split.sizes.products).intra_list_diversity
        with RunDraft(s.results, run_id, storage=storage) as draft:
            draft.save_model(model)
            write_factors(draft, model, *prepared.maps, split.pairs)  # for the API server
            with clock("recommend"):
                recs = recommendations_of(scored)
                edges = build_edges(named_recommendations(recs, *prepared.maps))
                draft.write_csv(EDGES_CSV, edges, split.sizes.users * s.top_n)
                draft.write_csv(POPULAR_CSV, published_popular(
                    split.sides, prepared.maps[1], s.popular_n), s.popular_n)
            with clock("graph"):
                graph = build_graph(
                    choose_engine(s.graph_engine, graphframes_jar_loaded(spark)),
                    users=split.lists.select(USER_IDX),
                    products=split.sides.select(
                        PRODUCT_IDX, self_information(F.col(BUYERS), split.sizes.users)),
                    recs=recs, named_edges=edges, user_map=prepared.maps[0],
                    product_map=prepared.maps[1], iterations=s.pagerank_iterations,
                    reset_probability=s.reset_probability, cache=keep)
                draft.write_csv(VERTICES_CSV, graph.vertices,
                                split.sizes.users + split.sizes.products)
            metrics = with_graph(metrics, graph, split.sizes, diversity)
            manifest = replace(manifest, graph_engine=graph.engine)
            path = draft.publish(metrics, manifest, clock.timings, clock.started)
    log.info("training run %s published in %.1f s", run_id, clock.timings.get("total", 0.0))
    return TrainingOutcome(run_id, True, reason, path, metrics)


# --- the stages that are one call ---------------------------------------------------------------


def fit(pairs: DataFrame, als: AlsSettings, spark: SparkSession) -> ALSModel:
    """ALS fitted on (user_idx, product_idx, rating) pairs."""
    blocks = resolve_blocks(als.num_blocks, spark.sparkContext.defaultParallelism)
    return fit_als(pairs, build_als(rank=als.rank, max_iter=als.max_iter, reg_param=als.reg_param,
                                    alpha=als.alpha, implicit_prefs=als.implicit_prefs,
                                    seed=als.seed, num_blocks=blocks))


def choose_als(train: DataFrame, s: RunSettings, sequence: int, run_id: str,
               spark: SparkSession, cache: CacheScope) -> tuple[AlsSettings, Selection | None]:
    """The ALS settings this run fits: chosen by model selection when it is due, else the last
    choice (recorded as reused), else als.* as configured."""
    storage = Storage(spark)
    stored = load_choice(storage, s.state)
    if not s.selection.due(sequence, stored is not None):
        if stored is None:
            return s.als, None
        reused_from, als = stored
        metric = s.accept_metric if s.als.implicit_prefs else "rmse"
        chosen = {name: getattr(als, name) for name in TUNED}
        return als, Selection(metric=metric, chosen=chosen, reused_from=reused_from)
    parallelism = spark.sparkContext.defaultParallelism
    als, selection = select(
        train, s.als, s.selection, k=s.k, accept_metric=s.accept_metric,
        fit=lambda pairs, candidate: fit(pairs, candidate, spark), cache=cache,
        num_chunks=parallelism)
    save_choice(storage, s.state, run_id, als)
    log.info("selection chose %s (validation %s)", selection.chosen, selection.metric)
    return als, selection


def score(model: ALSModel, split: Split, s: RunSettings, *, top_n: int,
          spark: SparkSession) -> DataFrame:
    """The scorer's one pass (scoring.score_users) over the split's users."""
    parallelism = spark.sparkContext.defaultParallelism
    return score_users(user_vectors(model), item_vectors(model), split.lists,
                       split.baseline_popular, k=s.k, top_n=top_n,
                       exclude_purchased=s.exclude_purchased,
                       num_chunks=scoring_chunks(split.sizes.users, parallelism))


def judge(evaluation: Evaluation, split: Split,
          s: RunSettings) -> tuple[Evaluation, bool, str]:
    """The verdict: implicit mode compares the ranking metric with the popularity list's,
    explicit mode the RMSE with the rating baseline's (whose RMSE becomes the baseline's)."""
    if s.als.implicit_prefs:
        return evaluation, *decide(evaluation.model, evaluation.baseline, s.accept_metric,
                                   s.accept_margin)
    bias = bias_baseline_rmse(split.train, split.test, s.bias_reg)
    evaluation = replace(evaluation, baseline={**evaluation.baseline, "rmse": bias})
    return evaluation, *decide_by_rmse(evaluation.model["rmse"], bias, s.rmse_margin)


# --- bookkeeping ---------------------------------------------------------------------------------


class StageClock:
    """Times the stages (manifest.timings_seconds) and logs their start and end."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.started, 3)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        log.info("training stage %s: start", name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 3)
            log.info("training stage %s: done in %.2f s", name, self.timings[name])


class CacheScope:
    """Caches the tables a run reads more than once, and unpersists them all at the end."""

    def __init__(self) -> None:
        self._cached: list[DataFrame] = []

    def __call__(self, df: DataFrame) -> DataFrame:
        self._cached.append(df.cache())
        return df

    def __enter__(self) -> CacheScope:
        return self

    def __exit__(self, *_: object) -> None:
        for df in self._cached:
            df.unpersist()


def _touch_numpy(batches: Iterator) -> Iterator:
    """A mapInArrow function that imports what the scorer imports and passes rows through."""
    import numpy  # noqa: F401
    import pyarrow.compute  # noqa: F401

    yield from batches


def warm_python_workers(spark: SparkSession, parallelism: int) -> int:
    """Start one Python worker per core with the scorer's imports (numpy, pyarrow), so that
    the evaluation does not wait for them; a tiny job, a no-op when the workers are alive."""
    warm = spark.range(parallelism, numPartitions=parallelism).mapInArrow(_touch_numpy, "id long")
    return len(warm.collect())


def warm_python_workers_in_background(spark: SparkSession) -> Future[int]:
    """warm_python_workers beside the JVM-only prepare, split and fit stages; a failure is
    logged (the scorer would then fail the same way, with its own error)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-workers")
    warmed = pool.submit(warm_python_workers, spark, spark.sparkContext.defaultParallelism)
    warmed.add_done_callback(lambda done: done.exception() and log.warning(
        "starting the Python workers failed: %s", done.exception()))
    pool.shutdown(wait=False)
    return warmed

