"""Follow ``results/latest`` and render each newly published run (``--watch``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from visualize.errors import VisualizeError
from visualize.loading import latest_run_id

logger = logging.getLogger(__name__)


def detect_new_run(last_handled: str | None, current: str | None) -> str | None:
    """The run to render now: the latest run when it is not the one handled last, else None."""
    if current is None or current == last_handled:
        return None
    return current


def watch(
    results: Path,
    render: Callable[[str], object],
    *,
    interval: float = 5.0,
    max_iterations: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    after_poll: Callable[[int], None] | None = None,
) -> int:
    """Poll ``results/latest`` every ``interval`` s and call ``render(run_id)`` for each new run.

    Runs until Ctrl-C (or ``max_iterations`` polls, for tests); returns how many runs were
    rendered. A run that cannot be rendered is logged and skipped, not retried. ``sleep`` and
    ``after_poll(iteration)`` are the test hooks: no real waiting, and a chance to publish a
    run between two polls.
    """
    results = Path(results)
    last: str | None = None
    rendered = 0
    polls = 0
    waiting_said = False
    logger.info("watching %s/latest every %.1f s (Ctrl-C stops)", results, interval)
    try:
        while max_iterations is None or polls < max_iterations:
            current = latest_run_id(results)
            new = detect_new_run(last, current)
            if new is not None:
                started = time.perf_counter()
                try:
                    render(new)
                    rendered += 1
                    logger.info("rendered run %s in %.2f s", new, time.perf_counter() - started)
                except VisualizeError as exc:
                    logger.warning("run %s not rendered: %s", new, exc)
                last = new
            elif current is None and not waiting_said:
                logger.info("no published run in %s yet; waiting", results)
                waiting_said = True
            polls += 1
            if after_poll is not None:
                after_poll(polls)
            if max_iterations is not None and polls >= max_iterations:
                break
            sleep(interval)
    except KeyboardInterrupt:
        logger.info("watch stopped after %d render(s)", rendered)
    return rendered
