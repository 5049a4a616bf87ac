"""--watch: which run is new, and the poll loop driven by test hooks (no sleeping)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.visualize_fixtures import point_latest, write_run
from visualize.errors import IncompleteRunError
from visualize.plots import PlotOptions
from visualize.report import render_run
from visualize.watch import detect_new_run, watch


@pytest.mark.parametrize(
    ("last", "current", "expected"),
    [
        (None, None, None),  # nothing published yet
        (None, "r1", "r1"),  # first run
        ("r1", "r1", None),  # unchanged
        ("r1", "r2", "r2"),  # a new run
        ("r2", None, None),  # latest vanished for a moment: keep waiting
        ("r2", "r1", "r1"),  # latest moved back (rollback): render what it points to
    ],
)
def test_detect_new_run(last: str | None, current: str | None, expected: str | None) -> None:
    assert detect_new_run(last, current) == expected


def test_watch_renders_each_new_run_once(tmp_path: Path) -> None:
    first = write_run(tmp_path, sequence=1)
    published: list[str] = []
    rendered: list[str] = []
    sleeps: list[float] = []

    def publish_between_polls(poll: int) -> None:
        if poll == 2:
            published.append(write_run(tmp_path, sequence=2).run_id)

    count = watch(
        tmp_path, lambda run_id: rendered.append(run_id), interval=7.0, max_iterations=4,
        sleep=sleeps.append, after_poll=publish_between_polls,
    )
    assert rendered == [first.run_id, *published]
    assert count == 2
    assert sleeps == [7.0, 7.0, 7.0]  # between polls only, never after the last


def test_watch_with_the_real_renderer(tmp_path: Path) -> None:
    first = write_run(tmp_path, sequence=1)
    second: list[str] = []

    def publish(poll: int) -> None:
        if poll == 1:
            second.append(write_run(tmp_path, sequence=2).run_id)

    def render(run_id: str) -> None:
        render_run(tmp_path, run_id, options=PlotOptions(dpi=30))

    count = watch(tmp_path, render, max_iterations=2, sleep=lambda _: None, after_poll=publish)
    assert count == 2
    for run_id in (first.run_id, second[0]):
        assert (tmp_path / "reports" / run_id / "index.html").is_file()
    assert (tmp_path / "reports" / "latest").resolve().name == second[0]


def test_watch_waits_for_a_first_run(tmp_path: Path) -> None:
    rendered: list[str] = []
    runs: list[str] = []

    def publish_late(poll: int) -> None:
        if poll == 3:
            runs.append(write_run(tmp_path / "results", sequence=1).run_id)

    watch(tmp_path / "results", rendered.append, max_iterations=5, sleep=lambda _: None,
          after_poll=publish_late)
    assert rendered == runs


def test_a_run_that_fails_is_logged_and_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_run(tmp_path, sequence=1)
    calls: list[str] = []

    def broken(run_id: str) -> None:
        calls.append(run_id)
        raise IncompleteRunError(f"run {run_id} is incomplete: metrics.json is missing")

    with caplog.at_level(logging.WARNING):
        count = watch(tmp_path, broken, max_iterations=3, sleep=lambda _: None)
    assert count == 0
    assert len(calls) == 1
    assert "metrics.json is missing" in caplog.text


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    run = write_run(tmp_path, sequence=1)
    rendered: list[str] = []

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    assert watch(tmp_path, rendered.append, sleep=interrupt) == 1
    assert rendered == [run.run_id]


def test_latest_moving_to_an_older_run_is_followed(tmp_path: Path) -> None:
    first = write_run(tmp_path, sequence=1)
    write_run(tmp_path, sequence=2)
    rendered: list[str] = []
    watch(tmp_path, rendered.append, max_iterations=2, sleep=lambda _: None,
          after_poll=lambda poll: point_latest(tmp_path, first.run_id))
    assert rendered[-1] == first.run_id
