"""The figures the metrics show of a finished training run, read from the files it published
(manifest.json, metrics.json under runs/ or rejected/), as any reader of the results would."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from recsys_contract.runs import (
    CREATED_AT_FORMAT,
    MANIFEST,
    METRICS,
    REJECTED_DIR,
    RUNS_DIR,
    Manifest,
    Metrics,
)
from spark_app.storage import Storage, join
from spark_app.training.export import latest_run_id


@dataclass(frozen=True)
class RunFigures:
    """One run's verdict, quality against its baseline, age and stage timings."""

    run_id: str
    sequence: int
    accepted: bool
    created_at: float  # epoch seconds
    accept_metric: str
    model: float | None  # the accept metric's value for the model
    baseline: float | None  # and for its baseline
    timings: dict[str, float]


def figures_of(manifest: Manifest, metrics: Metrics) -> RunFigures:
    created = calendar.timegm(time.strptime(manifest.created_at, CREATED_AT_FORMAT))
    name = metrics.accept_metric
    return RunFigures(
        run_id=manifest.run_id, sequence=manifest.sequence, accepted=metrics.accepted,
        created_at=float(created), accept_metric=name, model=metrics.model.get(name),
        baseline=metrics.baseline.get(name), timings=dict(manifest.timings_seconds),
    )


def read_run(storage: Storage, results: str, run_id: str, accepted: bool) -> RunFigures | None:
    """The figures of run `run_id` (published, or rejected), or None if its files are gone."""
    folder = join(results, RUNS_DIR if accepted else REJECTED_DIR, run_id)
    manifest = storage.read_text(join(folder, MANIFEST))
    metrics = storage.read_text(join(folder, METRICS))
    if manifest is None or metrics is None:
        return None
    return figures_of(Manifest.from_json(manifest, f"{folder}/{MANIFEST}"),
                      Metrics.from_json(metrics, f"{folder}/{METRICS}"))


def read_latest(storage: Storage, results: str) -> RunFigures | None:
    """The figures of the run `latest` names, or None before the first publication."""
    run_id = latest_run_id(storage, results)
    return read_run(storage, results, run_id, accepted=True) if run_id else None
