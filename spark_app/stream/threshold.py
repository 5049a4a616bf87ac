"""When to train, and on which events: pure decisions on counts, tested without Spark.

Every valid event gets a sequence number `seq` (0, 1, 2, ... in the order batches commit). A
training run is identified by its *cut*: the number of valid events it may see. Runs start at
cuts `threshold`, `2 * threshold`, ... (or earlier when `max_wait` passes), and the training set
of a cut `c` is the events with `seq < c` — all of them, or the latest `window` ones.
"""

from __future__ import annotations

from typing import Literal

CatchUp = Literal["exact", "latest"]
CATCH_UP_MODES: tuple[CatchUp, ...] = ("exact", "latest")


def threshold_cuts(trained_through: int, total_valid: int, threshold: int) -> list[int]:
    """Cuts reached when the valid-event count went up to `total_valid`.

    `trained_through` is the cut of the last run (0 before the first). A batch that brings
    more than `threshold` new events can reach several cuts; each is a run of its own.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    first = trained_through + threshold
    return list(range(first, total_valid + 1, threshold))


def due_cuts(
    trained_through: int, total_valid: int, threshold: int, catch_up: CatchUp
) -> tuple[list[int], list[int]]:
    """(cuts to train, cuts skipped) when the count went up to `total_valid`.

    `exact` trains every cut reached, one run each. `latest` trains once, at the latest cut
    reached, and skips the earlier ones: a backlog that crosses several cuts at once (a
    restart after a long stop, a replay) costs one run instead of one per cut.
    """
    if catch_up not in CATCH_UP_MODES:
        raise ValueError(f"catch_up must be one of {CATCH_UP_MODES}, got {catch_up!r}")
    cuts = threshold_cuts(trained_through, total_valid, threshold)
    if catch_up == "exact" or len(cuts) < 2:
        return cuts, []
    return cuts[-1:], cuts[:-1]


def max_wait_due(
    trained_through: int,
    total_valid: int,
    waiting_since: float | None,
    now: float,
    max_wait_seconds: float,
) -> bool:
    """True when `max_wait` is on, at least one event is pending and it waited long enough.

    `waiting_since` is when the first still-pending event was committed (None if none).
    """
    pending = total_valid - trained_through
    return (
        max_wait_seconds > 0
        and pending > 0
        and waiting_since is not None
        and now - waiting_since >= max_wait_seconds
    )


def training_range(cut: int, window_events: int) -> tuple[int, int]:
    """The `[first, end)` range of `seq` numbers in the training set of `cut`."""
    first = max(0, cut - window_events) if window_events > 0 else 0
    return first, cut


def events_until_next_run(trained_through: int, total_valid: int, threshold: int) -> int:
    """How many more valid events the next threshold run needs."""
    return max(0, trained_through + threshold - total_valid)
