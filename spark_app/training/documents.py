"""A run's metrics.json and manifest.json (recsys_contract.runs), from the stages' results."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime

from pyspark.sql import SparkSession

from recsys_contract.runs import (
    CREATED_AT_FORMAT,
    BeyondAccuracy,
    EventCounts,
    KafkaSpan,
    Manifest,
    Metrics,
    Selection,
)
from spark_app.training.evaluate import rmse_against
from spark_app.training.graph import RecommendationGraph
from spark_app.training.scoring import Evaluation
from spark_app.training.settings import AlsSettings, RunSettings
from spark_app.training.split import SplitSizes


def metrics_of(s: RunSettings, evaluation: Evaluation, accepted: bool,
               selection: Selection | None) -> Metrics:
    """metrics.json without its graph section (filled in once the graph is built)."""
    return Metrics(
        k=s.k, split=s.split.mode, test_users=evaluation.test_users,
        model=evaluation.model, baseline=evaluation.baseline,
        accept_metric=s.accept_metric if s.als.implicit_prefs else "rmse",
        accept_margin=s.accept_margin if s.als.implicit_prefs else s.rmse_margin,
        accepted=accepted,
        feedback="implicit" if s.als.implicit_prefs else "explicit",
        rmse_against=rmse_against(s.als.implicit_prefs), rmse_pairs=evaluation.rmse_pairs,
        selection=selection,
    )


def manifest_of(s: RunSettings, run_id: str, sequence: int, created: datetime, accepted: bool,
                reason: str, event_counts: dict[str, int], sizes: SplitSizes,
                kafka_offsets: dict[str, list[int]] | None, timings: dict[str, float],
                spark: SparkSession, als: AlsSettings, last_batch_id: int | None,
                seq_range: tuple[int, int] | None) -> Manifest:
    """manifest.json; `timings` is filled in as the run goes (the same dict); `als` the
    settings fitted (parameters.als), which model selection may have chosen."""
    return Manifest(
        run_id=run_id, sequence=sequence, created_at=created.strftime(CREATED_AT_FORMAT),
        accepted=accepted, reason=reason,
        events=EventCounts(**event_counts, users=sizes.users, products=sizes.products,
                           pairs=sizes.pairs, train_pairs=sizes.train, test_pairs=sizes.test),
        window_events=s.window_events,
        kafka=KafkaSpan(s.topic, {str(p): list(o) for p, o in (kafka_offsets or {}).items()}),
        parameters={**s.parameters, "als": asdict(als)}, timings_seconds=timings,
        spark={"version": spark.version, "master": spark.sparkContext.master},
        last_batch_id=last_batch_id,
        seq_range=list(seq_range) if seq_range is not None else None,
    )


def with_graph(metrics: Metrics, graph: RecommendationGraph, sizes: SplitSizes,
               diversity: float | None) -> Metrics:
    """metrics.json with its graph section and the beyond-accuracy figures of what is served."""
    figures = graph.figures(sizes.users, sizes.products)
    coverage = figures.products_recommended / figures.products if figures.products else None
    return replace(metrics, graph=figures, beyond_accuracy=BeyondAccuracy(
        catalog_coverage=coverage, gini=figures.gini_in_degree, novelty=graph.novelty,
        intra_list_diversity=diversity))
