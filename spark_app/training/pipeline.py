"""One training run: prepare -> split -> fit -> evaluate -> accept/reject -> recommend -> graph
-> export. The thin orchestrator: it reads the config sections and calls pure functions.

The streaming job calls run_training() when its threshold is reached.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from spark_app.config import AppConfig
from spark_app.schema import (
    PRODUCT_ID,
    PRODUCT_IDX,
    PURCHASES,
    RANK,
    SCORE,
    USER_ID,
    USER_IDX,
)
from spark_app.session import graphframes_jar_loaded
from spark_app.storage import Storage, join
from spark_app.training.als import build_als, fit_als, resolve_blocks
from spark_app.training.evaluate import (
    decide,
    evaluate_split,
    evaluation_of,
    held_label,
    recommendations_of,
    score_user_lists,
)
from spark_app.training.export import (
    EDGES_CSV,
    POPULAR_CSV,
    VERTICES_CSV,
    RunDraft,
    clean_stale_tmp,
    export_rejected,
    make_run_id,
)
from spark_app.training.graph import (
    build_edges,
    choose_engine,
    concentration_of,
    degree_counts,
    degree_table,
    graph_graphframes,
    in_degree_histogram,
    vertex_table,
    with_pagerank,
)
from spark_app.training.prepare import (
    attach_indices,
    pairs_by_user,
    update_id_maps,
)
from spark_app.training.recommend import (
    QUANTITY_TOTAL,
    USERS_PER_CHUNK,
    bought_lists,
    product_sides,
    rank_popular,
    recommend_for_users,
    training_side,
    user_vectors,
)
from spark_app.training.split import (
    HELD_OUT,
    flag_held_out,
    side_lists,
    side_sizes,
    split_flagged,
)

log = logging.getLogger(__name__)

ID_MAP_DIR = "id_map"


@dataclass(frozen=True)
class TrainingOutcome:
    """What one run did: published (accepted) or recorded as rejected, and where."""

    run_id: str
    accepted: bool
    reason: str
    path: str  # URI of the run's folder
    metrics: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    log.info("training stage %s: start", name)
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - started, 3)
        log.info("training stage %s: done in %.2f s", name, timings[name])


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


def scoring_chunks(users: int, parallelism: int) -> int:
    """Chunks of at most USERS_PER_CHUNK users, a multiple of the cores (one task each)."""
    per_core = max(1, math.ceil(users / USERS_PER_CHUNK / parallelism))
    return per_core * parallelism


def run_training(
    spark: SparkSession,
    events: DataFrame,
    cfg: AppConfig,
    *,
    sequence: int,
    event_counts: dict[str, int],
    kafka_offsets: dict[str, list[int]] | None = None,
    seq_range: tuple[int, int] | None = None,
    storage: Storage | None = None,
) -> TrainingOutcome:
    """Train, evaluate against the popularity baseline, and publish or reject one run.

    `seq_range`: the events' [first_seq, cut), recorded in the manifest so that a restart
    finds this sequence's run again (export.find_published) instead of publishing it twice.
    """
    cycle_started = time.perf_counter()
    timings: dict[str, float] = {}
    storage = storage or Storage(spark)
    results = storage.qualify(cfg.paths.results)
    state = storage.qualify(cfg.paths.state)
    storage.mkdirs(results)
    clean_stale_tmp(storage, results)
    created = datetime.now(UTC)
    run_id = make_run_id(sequence, created)
    parallelism = spark.sparkContext.defaultParallelism
    log.info("training run %s on %s events", run_id, event_counts.get("training_set"))
    cached: list[DataFrame] = []

    def keep(df: DataFrame) -> DataFrame:
        cached.append(df.cache())
        return df

    # The first scoring of a session starts the Python workers (about 3 s); that runs
    # meanwhile, beside the JVM-only prepare and split stages.
    warming = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-workers")
    warmed = warming.submit(warm_python_workers, spark, parallelism)
    warming.shutdown(wait=False)
    try:
        with _stage("prepare", timings):
            # Integer ids first (see prepare.py): the maps from the events' ids, the two
            # independent maps' small jobs side by side; the aggregation by integer pair,
            # clustered by user, is lazy, run and cached once with the split's flag below.
            user_map, product_map = update_id_maps(spark, events, join(state, ID_MAP_DIR),
                                                   storage)
            indexed = pairs_by_user(attach_indices(events, user_map, product_map))

        with _stage("split", timings):
            # One cached table holds both sides; one job counts everything the manifest needs.
            flagged = keep(
                flag_held_out(
                    indexed,
                    cfg.evaluation.split,
                    cfg.evaluation.test_fraction,
                    cfg.evaluation.seed,
                )
            )
            pairs = flagged.drop(HELD_OUT)
            train, test = split_flagged(flagged)
            # Per user: both sides' products (the scorer's input); per product: the totals of
            # both popular lists. Both cached, filled by the job that counts everything.
            lists = keep(side_lists(flagged, held_label(cfg.als.implicit_prefs)))
            sides = keep(product_sides(flagged))
            sizes = side_sizes(lists, sides)
            n_pairs, n_users, n_products, n_train, n_test = (
                sizes[c] for c in ("pairs", "users", "products", "train", "test")
            )
            log.info(
                "%d pairs of %d users and %d products; split %s: %d train, %d test pairs",
                n_pairs,
                n_users,
                n_products,
                cfg.evaluation.split,
                n_train,
                n_test,
            )

        als = build_als(
            rank=cfg.als.rank,
            max_iter=cfg.als.max_iter,
            reg_param=cfg.als.reg_param,
            alpha=cfg.als.alpha,
            implicit_prefs=cfg.als.implicit_prefs,
            seed=cfg.als.seed,
            num_blocks=resolve_blocks(cfg.als.num_blocks, parallelism),
        )
        with _stage("fit", timings):
            model = fit_als(train, als)

        # With the default `blocked` strategy and no refit, one pass of the scorer evaluates
        # and recommends: each user is scored once (the recommendations are kept for later).
        one_pass = cfg.recommend.strategy == "blocked" and not cfg.evaluation.refit_on_all_pairs
        scored: DataFrame | None = None
        with _stage("evaluate", timings):
            if warmed.exception() is not None:  # waits for it; the scorer would fail the same
                log.warning("starting the Python workers failed: %s", warmed.exception())
            options: dict[str, Any] = {
                "k": cfg.evaluation.k,
                "exclude_purchased": cfg.recommend.exclude_purchased,
                "implicit_prefs": cfg.als.implicit_prefs,
                "num_chunks": scoring_chunks(n_users, parallelism),
            }
            if one_pass:
                del options["implicit_prefs"]  # the labels are in `lists` already
                scored = keep(
                    score_user_lists(
                        model,
                        lists,
                        rank_popular(training_side(sides)),
                        top_n=cfg.recommend.top_n,
                        **options,
                    )
                )
                evaluation = evaluation_of(scored, n_products)
            else:
                evaluation = evaluate_split(
                    model,
                    train,
                    test,
                    catalog_size=n_products,
                    strategy=cfg.recommend.strategy,
                    **options,
                )
        accepted, reason = decide(
            evaluation["model"],
            evaluation["baseline"],
            cfg.evaluation.accept_metric,
            cfg.evaluation.accept_margin,
        )
        log.info("run %s %s: %s", run_id, "accepted" if accepted else "REJECTED", reason)
        metrics: dict[str, Any] = {
            "k": cfg.evaluation.k,
            "split": cfg.evaluation.split,
            "test_users": evaluation["test_users"],
            "model": evaluation["model"],
            "baseline": evaluation["baseline"],
            "accept_metric": cfg.evaluation.accept_metric,
            "accept_margin": cfg.evaluation.accept_margin,
            "accepted": accepted,
            "graph": None,
        }
        manifest: dict[str, Any] = {
            "run_id": run_id,
            "sequence": sequence,
            "seq_range": list(seq_range) if seq_range is not None else None,
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "accepted": accepted,
            "reason": reason,
            "events": {
                **event_counts,
                "users": n_users,
                "products": n_products,
                "pairs": n_pairs,
                "train_pairs": n_train,
                "test_pairs": n_test,
            },
            "window_events": cfg.training.window_events,
            "kafka": {
                "topic": cfg.kafka.topic,
                "offsets": {str(p): list(o) for p, o in (kafka_offsets or {}).items()},
            },
            "parameters": {
                "als": cfg.als.model_dump(mode="json"),
                "evaluation": cfg.evaluation.model_dump(mode="json"),
                "recommend": {
                    **cfg.recommend.model_dump(mode="json"),
                    "strategy": cfg.recommend.strategy,
                    "refit_on_all_pairs": cfg.evaluation.refit_on_all_pairs,
                },
                "graph": cfg.graph.model_dump(mode="json"),
            },
            "timings_seconds": timings,
            "spark": {"version": spark.version, "master": spark.sparkContext.master},
            "graph_engine": None,
        }

        if not accepted:
            timings["total"] = round(time.perf_counter() - cycle_started, 3)
            path = export_rejected(storage, results, run_id, metrics=metrics, manifest=manifest)
            log.warning("run %s rejected, latest unchanged: %s", run_id, reason)
            return TrainingOutcome(run_id, False, reason, path, metrics)

        if cfg.evaluation.refit_on_all_pairs:
            with _stage("refit", timings):
                model = fit_als(pairs, als)

        # The run's files are written as soon as their data is ready, beside the next stages:
        # the model and the edges and popular CSVs while the graph is computed.
        with RunDraft(results, run_id, storage=storage) as draft:
            draft.save_model(model)
            with _stage("recommend", timings):
                if scored is not None:
                    recs = recommendations_of(scored)
                else:
                    exclude = bought_lists(pairs) if cfg.recommend.exclude_purchased else None
                    recs = keep(  # read by the graph and by the edges' export
                        recommend_for_users(
                            model,
                            user_vectors(model).select(USER_IDX),
                            cfg.recommend.top_n,
                            exclude=exclude,
                            strategy=cfg.recommend.strategy,
                            num_chunks=scoring_chunks(n_users, parallelism),
                        )
                    )
                named = (
                    recs.join(user_map, USER_IDX)
                    .join(product_map, PRODUCT_IDX)
                    .select(USER_ID, PRODUCT_ID, SCORE, RANK)
                )
                edges = build_edges(named)
                # At most top_n edges per user: the bound decides one file or a folder of parts.
                draft.write_csv(EDGES_CSV, edges, n_users * cfg.recommend.top_n)
                popular = (
                    rank_popular(
                        sides.select(PRODUCT_IDX, PURCHASES, QUANTITY_TOTAL),
                        cfg.recommend.popular_n,
                    )
                    .join(product_map, PRODUCT_IDX)
                    .select(RANK, PRODUCT_ID, PURCHASES, QUANTITY_TOTAL)
                    .orderBy(RANK)
                )
                draft.write_csv(POPULAR_CSV, popular, cfg.recommend.popular_n)

            with _stage("graph", timings):
                engine = choose_engine(cfg.graph.engine, graphframes_jar_loaded(spark))
                log.info("graph engine: %s (requested %s)", engine, cfg.graph.engine)
                if engine == "dataframe":
                    # On the integer ids; the id maps are joined once per vertex for the labels.
                    # One job counts what the PageRank and the concentration figures need.
                    table = keep(
                        degree_table(
                            lists.select(USER_IDX),
                            sides.select(PRODUCT_IDX),
                            recs,
                            user_map,
                            product_map,
                        )
                    )
                    counts = degree_counts(table)
                    histogram = counts.histogram
                    graph = with_pagerank(table, counts, cfg.graph.reset_probability)
                else:
                    vertices = vertex_table(
                        lists.select(USER_IDX), sides.select(PRODUCT_IDX), user_map, product_map
                    )
                    graph = keep(
                        graph_graphframes(
                            vertices,
                            edges,
                            iterations=cfg.graph.pagerank_iterations,
                            reset_probability=cfg.graph.reset_probability,
                        )
                    )
                    histogram = in_degree_histogram(graph)  # every edge ends at a product vertex
                draft.write_csv(VERTICES_CSV, graph, n_users + n_products)
                n_edges = sum(degree * count for degree, count in histogram)
                metrics["graph"] = {
                    "vertices": n_users + n_products,
                    "edges": n_edges,
                    "users": n_users,
                    "products": n_products,
                    **concentration_of(histogram),
                }
                manifest["graph_engine"] = engine

            # timings["export"]: from the draft's start, across the recommend and graph stages.
            path = draft.publish(metrics, manifest, timings, cycle_started)
        log.info("training run %s published in %.1f s", run_id, timings.get("total", 0.0))
        return TrainingOutcome(run_id, True, reason, path, metrics)
    finally:
        for df in cached:
            df.unpersist()
