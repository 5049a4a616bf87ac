"""Test helpers: a run's local folder from the URIs the job returns, and `latest`'s run."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from recsys_contract.runs import RUNS_DIR
from visualize.loading import latest_run_id


def local(uri: str | Path) -> Path:
    """The local path of a `file:` URI (or of a plain path)."""
    text = str(uri)
    return Path(unquote(urlparse(text).path)) if text.startswith("file:") else Path(text)


def read_latest(results: Path) -> str | None:
    """The run id `results/latest` names (pointer file or older symlink), if it is published."""
    return latest_run_id(results)


def latest_dir(results: Path) -> Path:
    """The folder of the run `results/latest` names (AssertionError if it names none)."""
    run_id = read_latest(results)
    assert run_id is not None, f"{results}/latest names no published run"
    return Path(results) / RUNS_DIR / run_id
