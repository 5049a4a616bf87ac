"""`latest`: the pointer file naming the newest published run (framework-free, for readers).

A small file `latest` under the results root holds the run id and a newline; the job replaces
it atomically after each publish (HDFS and object stores have no symlinks). Readers (the
visualizer, the demo, tests) call `parse_latest` on its text, or `read_latest` on a local
results folder, which also understands the symlink `latest -> runs/<run_id>` of versions before
the pointer file (the job replaces that link with the file at its next publish).
The lead moves these names into `recsys_contract/`.
"""

from __future__ import annotations

import os
from pathlib import Path

LATEST = "latest"
RUNS = "runs"


def format_latest(run_id: str) -> str:
    """The pointer file's content for `run_id`."""
    return f"{run_id}\n"


def parse_latest(text: str) -> str | None:
    """The run id a pointer file's text names, or None if it names none."""
    run_id = text.strip()
    if not run_id or "/" in run_id or run_id.startswith("."):
        return None
    return run_id


def read_latest(results: Path) -> str | None:
    """The run id `results/latest` names (pointer file or old symlink), or None."""
    pointer = Path(results) / LATEST
    if pointer.is_symlink():
        return os.readlink(pointer).rstrip("/").split("/")[-1] or None
    try:
        return parse_latest(pointer.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, UnicodeDecodeError):
        return None
