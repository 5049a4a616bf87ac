"""A training run's settings as plain values, read from the config once per run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recsys_contract.config import AppConfig
from spark_app.training.split import SplitSettings


@dataclass(frozen=True)
class AlsSettings:
    """Spark MLlib ALS's hyper-parameters (als.* in conf/defaults.yaml)."""

    rank: int
    max_iter: int
    reg_param: float
    alpha: float
    implicit_prefs: bool
    seed: int
    num_blocks: int  # 0 = the session's default parallelism


@dataclass(frozen=True)
class SelectionSettings:
    """selection.* in conf/defaults.yaml."""

    every_n_runs: int  # 0 = off; 1 = every run; N = runs 1, N+1, 2N+1, ... (others reuse)
    grid: tuple[dict[str, float], ...]  # each: rank, reg_param, alpha
    validation_fraction: float
    seed: int
    time_budget_seconds: float

    def due(self, sequence: int, have_choice: bool) -> bool:
        """Whether run `sequence` selects (else it reuses the last choice, if any)."""
        if self.every_n_runs <= 0:
            return False
        return not have_choice or (sequence - 1) % self.every_n_runs == 0


@dataclass(frozen=True)
class RunSettings:
    """Everything a run needs to know, and the parameters its manifest records."""

    results: str  # a URI or a plain local path (spark_app/storage.py)
    state: str
    topic: str
    window_events: int
    split: SplitSettings
    als: AlsSettings
    selection: SelectionSettings
    k: int
    accept_metric: str
    accept_margin: float
    rmse_margin: float
    bias_reg: float
    refit: bool
    top_n: int
    exclude_purchased: bool
    popular_n: int
    graph_engine: str
    pagerank_iterations: int
    reset_probability: float
    parameters: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: AppConfig) -> RunSettings:
        e, r, g = cfg.evaluation, cfg.recommend, cfg.graph
        return cls(
            results=cfg.paths.results,
            state=cfg.paths.state,
            topic=cfg.kafka.topic,
            window_events=cfg.training.window_events,
            split=SplitSettings(e.split, e.test_fraction, e.seed, cfg.als.implicit_prefs),
            als=AlsSettings(**cfg.als.model_dump()),
            selection=SelectionSettings(
                every_n_runs=cfg.selection.every_n_runs,
                grid=tuple(point.model_dump() for point in cfg.selection.grid),
                validation_fraction=cfg.selection.validation_fraction,
                seed=cfg.selection.seed,
                time_budget_seconds=cfg.selection.time_budget_seconds,
            ),
            k=e.k,
            accept_metric=e.accept_metric,
            accept_margin=e.accept_margin,
            rmse_margin=e.rmse_margin,
            bias_reg=e.bias_reg,
            refit=e.refit_on_all_pairs,
            top_n=r.top_n,
            exclude_purchased=r.exclude_purchased,
            popular_n=r.popular_n,
            graph_engine=g.engine,
            pagerank_iterations=g.pagerank_iterations,
            reset_probability=g.reset_probability,
            parameters={section: getattr(cfg, section).model_dump(mode="json")
                        for section in ("als", "evaluation", "selection", "recommend", "graph")},
        )
