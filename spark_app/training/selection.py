"""Model selection inside a run: a small grid of ALS settings judged on a validation split.

The validation pairs are carved from the training side only (the run's test pairs are never
given to this module), each candidate is fitted on the rest and scored by the same one-pass
scorer as the run itself, on the run's acceptance figure: the ranking metric in implicit mode,
the RMSE in explicit mode. The best candidate's settings are then fitted on the whole training
side and tested like any run. Candidates are tried in grid order until the time budget is
spent (the first is always tried); the choice can be reused for the next runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_contract.runs import Candidate, Selection
from spark_app.storage import Storage, join
from spark_app.training.evaluate import held_label
from spark_app.training.recommend import rank_popular
from spark_app.training.scoring import evaluation_of, item_vectors, score_users, user_vectors
from spark_app.training.settings import AlsSettings, SelectionSettings
from spark_app.training.split import (
    HELD_PRODUCTS,
    flag_held_out,
    product_sides,
    side_lists,
    split_flagged,
    training_side,
)

log = logging.getLogger(__name__)

CHOICE_FILE = "selection.json"  # in paths.state: the last choice, for the runs that reuse it
TUNED = ("rank", "reg_param", "alpha")


def candidates(base: AlsSettings, grid: tuple[dict[str, float], ...]) -> list[AlsSettings]:
    """The grid as ALS settings: each point overrides rank, reg_param and alpha of `base`."""
    return [replace(base, **{k: type(getattr(base, k))(v) for k, v in point.items()})
            for point in grid]


def select(
    train: DataFrame,
    base: AlsSettings,
    settings: SelectionSettings,
    *,
    k: int,
    accept_metric: str,
    fit: Callable[[DataFrame, AlsSettings], ALSModel],
    cache: Callable[[DataFrame], DataFrame],
    num_chunks: int,
) -> tuple[AlsSettings, Selection]:
    """The best grid point on a validation split of `train` (the run's training pairs)."""
    implicit = base.implicit_prefs
    flagged = cache(flag_held_out(train, "random", settings.validation_fraction, settings.seed))
    inner, _ = split_flagged(flagged)
    lists = cache(side_lists(flagged, held_label(implicit)))
    sides = product_sides(flagged)
    popular = cache(rank_popular(training_side(sides)))
    catalog = sides.count()
    metric = accept_metric if implicit else "rmse"
    started, tried = time.monotonic(), []
    for als in candidates(base, settings.grid):
        if tried and time.monotonic() - started > settings.time_budget_seconds:
            log.warning("selection: time budget of %.0f s spent after %d of %d candidates",
                        settings.time_budget_seconds, len(tried), len(settings.grid))
            break
        fit_started = time.monotonic()
        model = fit(inner, als)
        evaluation = evaluation_of(score_users(
            user_vectors(model), item_vectors(model), lists, popular, k=k, top_n=0,
            exclude_purchased=True, num_chunks=num_chunks), catalog)
        value = evaluation.model.get(metric)
        tried.append(Candidate({name: getattr(als, name) for name in TUNED}, value,
                               round(time.monotonic() - fit_started, 3)))
        log.info("selection: %s -> validation %s %s", tried[-1].parameters, metric, value)
    best = tried[_best(tried, higher_is_better=implicit)]
    chosen = candidates(base, (best.parameters,))[0]
    return chosen, Selection(metric=metric, chosen=best.parameters,
                             validation_pairs=_validation_pairs(lists), candidates=tuple(tried))


def _best(tried: list[Candidate], higher_is_better: bool) -> int:
    """Index of the best validation figure (the first of equals; None counts as worst)."""
    def key(i: int) -> float:
        value = tried[i].validation
        if value is None:
            return float("-inf")
        return value if higher_is_better else -value

    return max(range(len(tried)), key=key)


def _validation_pairs(lists: DataFrame) -> int:
    return int(lists.agg(F.sum(F.size(HELD_PRODUCTS))).first()[0] or 0)


def save_choice(storage: Storage, state: str, run_id: str, als: AlsSettings) -> None:
    """Record the chosen settings for the runs that reuse them (replaced atomically)."""
    storage.mkdirs(state)
    storage.write_atomic(join(state, CHOICE_FILE),
                         json.dumps({"run_id": run_id, "als": asdict(als)}, indent=1))


def load_choice(storage: Storage, state: str) -> tuple[str, AlsSettings] | None:
    """(run id, settings) of the last choice, or None."""
    text = storage.read_text(join(state, CHOICE_FILE))
    if text is None:
        return None
    data: dict[str, Any] = json.loads(text)
    return data["run_id"], AlsSettings(**data["als"])
