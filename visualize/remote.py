"""Results on HDFS: read over WebHDFS (fsspec's `webhdfs` filesystem) into a local mirror.

`--results hdfs://namenode:RPC_PORT/path` (the URI the job was given; WebHDFS answers on the
NameNode's HTTP port, `--webhdfs-port`, Hadoop 3's 9870 by default) or
`--results webhdfs://namenode:HTTP_PORT/path`. The run to draw (its JSON and CSV files, not its
model) and the manifest and metrics of every run (the quality-over-runs plot) are copied into
a local results folder of the same layout, which the rest of the visualizer reads as usual:
the report's relative links to the run's files then work from disk. A run folder is copied
under a `.tmp-` name and renamed when whole; published runs never change, so one already
mirrored is not fetched again. No Spark, no Hadoop client: plain HTTP.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from recsys_contract.runs import LATEST, REJECTED_DIR, RUNS_DIR, format_latest, parse_latest
from visualize.errors import NoPublishedRunError, ResultsNotFoundError, RunNotFoundError

logger = logging.getLogger(__name__)

REMOTE_SCHEMES = ("hdfs", "webhdfs")
DEFAULT_WEBHDFS_PORT = 9870
SMALL_FILES = ("manifest.json", "metrics.json")
RUN_FILES = (*SMALL_FILES, "vertices.csv", "edges.csv", "popular.csv", "recommendations.csv")
TMP_PREFIX = ".tmp-"


def is_remote(results: str | Path) -> bool:
    """Whether `results` names a folder on HDFS rather than a local path."""
    return urlparse(str(results)).scheme in REMOTE_SCHEMES


def mirror_dir(results: str, cache: Path) -> Path:
    """The local folder that mirrors remote `results` under `cache`."""
    url = urlparse(results)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{url.hostname}_{url.port}{url.path}").strip("_")
    return Path(cache) / name


def _filesystem(results: str, webhdfs_port: int) -> tuple[Any, str]:
    """(fsspec WebHDFS filesystem, the results folder's path on it)."""
    from fsspec.implementations.webhdfs import WebHDFS

    url = urlparse(results)
    port = url.port if url.scheme == "webhdfs" and url.port else webhdfs_port
    fs = WebHDFS(url.hostname or "127.0.0.1", port=port, skip_instance_cache=True)
    return fs, url.path.rstrip("/") or "/"


def _names(fs: Any, folder: str) -> list[str]:
    """Visible sub-folder names of `folder` ([] if it does not exist)."""
    if not fs.exists(folder):
        return []
    return sorted(
        Path(entry["name"]).name for entry in fs.ls(folder, detail=True)
        if entry["type"] == "directory" and not Path(entry["name"]).name.startswith(".")
    )


def _copy_run(fs: Any, source: str, target: Path, files: tuple[str, ...]) -> None:
    """Copy a run's `files` (a CSV may be a folder of parts) to `target`, whole or not at all."""
    if target.is_dir():
        return
    tmp = target.parent / f"{TMP_PREFIX}{target.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name in files:
        remote = f"{source}/{name}"
        if not fs.exists(remote):
            continue
        if fs.isdir(remote):
            (tmp / name).mkdir()
            for part in fs.ls(remote, detail=False):
                if Path(part).name.startswith("part-"):
                    fs.get_file(part, str(tmp / name / Path(part).name))
        else:
            fs.get_file(remote, str(tmp / name))
    tmp.rename(target)


def mirror(results: str, run: str, cache: Path, webhdfs_port: int = DEFAULT_WEBHDFS_PORT) -> Path:
    """Copy run `run` (an id or "latest") of remote `results`, and every run's manifest and
    metrics, into a local mirror; return the mirror (a results folder to render from)."""
    import requests

    fs, root = _filesystem(results, webhdfs_port)
    local = mirror_dir(results, cache)
    try:
        if not fs.exists(root):
            raise ResultsNotFoundError(f"results directory not found: {results}")
        published = _names(fs, f"{root}/{RUNS_DIR}")
        rejected = _names(fs, f"{root}/{REJECTED_DIR}")
        latest = None
        if fs.exists(f"{root}/{LATEST}"):
            latest = parse_latest(fs.cat_file(f"{root}/{LATEST}").decode("utf-8"))
        if run == LATEST:
            wanted = latest if latest in published else (published[-1] if published else None)
            if wanted is None:
                raise NoPublishedRunError(f"no published run yet in {results}")
        elif run in published or run in rejected:
            wanted = run
        else:
            raise RunNotFoundError(f"run {run} not found in {results}/{RUNS_DIR}")
        for name in published:
            files = RUN_FILES if name == wanted else SMALL_FILES
            target = local / RUNS_DIR / name
            if name == wanted and target.is_dir() and not (target / "vertices.csv").exists():
                shutil.rmtree(target)  # mirrored before for the history only
            _copy_run(fs, f"{root}/{RUNS_DIR}/{name}", target, files)
        for name in rejected:
            _copy_run(fs, f"{root}/{REJECTED_DIR}/{name}", local / REJECTED_DIR / name, SMALL_FILES)
    except requests.exceptions.RequestException as exc:
        raise ResultsNotFoundError(
            f"cannot read {results} over WebHDFS ({type(exc).__name__}); start HDFS or give "
            f"the NameNode's HTTP port with --webhdfs-port (now {webhdfs_port})"
        ) from None
    if latest is not None:
        (local / LATEST).write_text(format_latest(latest), encoding="utf-8")
    logger.info("mirrored run %s of %s into %s", wanted, results, local)
    return local
