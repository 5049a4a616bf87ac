"""The threshold decision and training ranges: pure functions on counts."""

from __future__ import annotations

import pytest

from recsys_contract.config import load_config
from spark_app.errors import InvalidConfigError
from spark_app.stream.threshold import (
    due_cuts,
    events_until_next_run,
    max_wait_due,
    threshold_cuts,
    training_range,
)


@pytest.mark.parametrize(
    ("trained_through", "total_valid", "threshold", "cuts"),
    [
        (0, 9_999, 10_000, []),
        (0, 10_000, 10_000, [10_000]),
        (0, 25_000, 10_000, [10_000, 20_000]),  # one big batch crosses two thresholds
        (10_000, 19_999, 10_000, []),
        (10_000, 20_001, 10_000, [20_000]),
        (12_345, 22_345, 10_000, [22_345]),  # counted from the last run's cut (after max_wait)
    ],
)
def test_threshold_cuts(trained_through, total_valid, threshold, cuts):
    assert threshold_cuts(trained_through, total_valid, threshold) == cuts


@pytest.mark.parametrize(
    ("catch_up", "trained_through", "total_valid", "expected"),
    [
        ("exact", 0, 50_000, ([10_000, 20_000, 30_000, 40_000, 50_000], [])),
        # a 50k backlog at threshold 10k: one run, at the latest cut; the others skipped
        ("latest", 0, 50_000, ([50_000], [10_000, 20_000, 30_000, 40_000])),
        ("latest", 10_000, 25_000, ([20_000], [])),  # one cut: nothing to skip
        ("latest", 10_000, 19_999, ([], [])),
    ],
)
def test_due_cuts_per_catch_up_mode(catch_up, trained_through, total_valid, expected):
    assert due_cuts(trained_through, total_valid, 10_000, catch_up) == expected


def test_an_unknown_catch_up_mode_is_refused_by_its_key():
    with pytest.raises(InvalidConfigError, match="training.catch_up"):
        load_config(overrides=["training.catch_up=fastest"])


def test_threshold_must_be_positive():
    with pytest.raises(ValueError, match="threshold"):
        threshold_cuts(0, 10, 0)


@pytest.mark.parametrize(
    ("trained_through", "total_valid", "waiting_since", "now", "max_wait", "due"),
    [
        (0, 5, 100.0, 160.0, 60.0, True),
        (0, 5, 100.0, 159.0, 60.0, False),  # not long enough
        (5, 5, 100.0, 999.0, 60.0, False),  # nothing pending
        (0, 5, 100.0, 999.0, 0.0, False),  # max_wait off
        (0, 5, None, 999.0, 60.0, False),
    ],
)
def test_max_wait_due(trained_through, total_valid, waiting_since, now, max_wait, due):
    assert max_wait_due(trained_through, total_valid, waiting_since, now, max_wait) is due


@pytest.mark.parametrize(
    ("cut", "window", "expected"),
    [(20_000, 0, (0, 20_000)), (20_000, 5_000, (15_000, 20_000)), (3_000, 5_000, (0, 3_000))],
)
def test_training_range(cut, window, expected):
    assert training_range(cut, window) == expected


def test_events_until_next_run():
    assert events_until_next_run(10_000, 15_000, 10_000) == 5_000
