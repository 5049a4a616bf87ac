"""Find, read and check published runs (docs/run-format.md); pandas and json only, no Spark.

A run is read only once it is published (``results/runs/<run_id>/``); directories whose names
start with ``.`` are runs being written and are never read. Anything missing, truncated or
malformed raises a named error from :mod:`visualize.errors` whose message is one line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from recsys_contract.errors import RunFormatError
from recsys_contract.events import PRODUCT_ID
from recsys_contract.runs import (
    BEYOND_ACCURACY_NAMES,
    CSV_FILES,
    CSV_PART_GLOB,
    EDGE_DST,
    EDGE_SRC,
    EDGES_CSV,
    HIDDEN_PREFIX,
    IN_DEGREE,
    LATEST,
    MANIFEST,
    METRIC_NAMES,
    METRICS,
    OUT_DEGREE,
    POPULAR_CSV,
    PRODUCT_TYPE,
    RANK,
    REJECTED_DIR,
    RUNS_DIR,
    SCORE,
    TMP_PREFIX,
    USER_TYPE,
    VERTEX_ID,
    VERTEX_LABEL,
    VERTEX_TYPE,
    VERTICES_CSV,
    Manifest,
    Metrics,
    parse_latest,
)
from visualize.errors import (
    EmptyRunError,
    IncompleteRunError,
    NoPublishedRunError,
    ResultsNotFoundError,
    RunNotFoundError,
)

logger = logging.getLogger(__name__)
T = TypeVar("T", Manifest, Metrics)

# The columns read (only those drawn or shown; others in the contract, e.g. pagerank, are not
# needed) -> pandas dtype; strings stay strings even when they look like numbers.
VERTEX_DTYPES: dict[str, str] = {
    VERTEX_ID: "str",
    VERTEX_TYPE: "str",
    VERTEX_LABEL: "str",
    IN_DEGREE: "int64",
    OUT_DEGREE: "int64",
}
EDGE_DTYPES: dict[str, str] = {EDGE_SRC: "str", EDGE_DST: "str", SCORE: "float64"}
POPULAR_DTYPES: dict[str, str] = {RANK: "int64", PRODUCT_ID: "str"}
RECOMMENDATIONS = "recommendations.csv"  # optional (docs/run-format.md)
PUBLISHED = "published"
REJECTED = "rejected"


@dataclass(frozen=True)
class Run:
    """One published run, read and checked: what every plot and the report work from."""

    run_id: str
    path: Path
    manifest: Manifest
    metrics: Metrics
    vertices: pd.DataFrame
    edges: pd.DataFrame
    popular: pd.DataFrame
    files: dict[str, Path]  # file name -> path of the CSV (a file or a folder of parts)


# --- discovery ---------------------------------------------------------------------------------


def _visible_dirs(folder: Path) -> list[str]:
    """Sorted names of the sub-directories of ``folder`` that are not hidden (being written)."""
    if not folder.is_dir():
        return []
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if not entry.name.startswith(HIDDEN_PREFIX) and entry.is_dir()
    )


def published_run_ids(results: Path) -> list[str]:
    """Ids of the published runs, oldest first (run ids sort by time)."""
    return _visible_dirs(Path(results) / RUNS_DIR)


def rejected_run_ids(results: Path) -> list[str]:
    """Ids of the rejected runs (metrics and manifest only), oldest first."""
    return _visible_dirs(Path(results) / REJECTED_DIR)


def pending_run_dirs(results: Path) -> list[str]:
    """Names of the runs being written (``.tmp-*``), in results/ or results/runs/."""
    results = Path(results)
    found: list[str] = []
    for folder in (results, results / RUNS_DIR):
        if folder.is_dir():
            found += [
                e.name
                for e in os.scandir(folder)
                if e.name.startswith(TMP_PREFIX) and e.is_dir(follow_symlinks=False)
            ]
    return sorted(found)


def latest_run_id(results: Path) -> str | None:
    """Run id the ``results/latest`` pointer names (or an older layout's symlink points at),
    or None when it is absent or names no published run."""
    pointer = Path(results) / LATEST
    if pointer.is_symlink():  # the layout before the pointer file
        run_id = os.readlink(pointer).rstrip("/").split("/")[-1]
    elif pointer.is_file():
        try:
            run_id = parse_latest(pointer.read_text(encoding="utf-8"))
        except (RunFormatError, UnicodeDecodeError) as exc:
            logger.warning("%s is unreadable: %s", pointer, exc)
            return None
    else:
        return None
    if run_id is None or not (Path(results) / RUNS_DIR / run_id).is_dir():
        return None
    return run_id


def resolve_run(results: Path, run: str = LATEST) -> Path:
    """Directory of the published run ``run`` (an id or "latest"), or a named error saying why."""
    results = Path(results)
    if not results.is_dir():
        raise ResultsNotFoundError(f"results directory not found: {results}")
    runs_dir = results / RUNS_DIR
    published = published_run_ids(results)
    if run == LATEST:
        latest = latest_run_id(results)
        if latest is not None:
            return runs_dir / latest
        if published:
            logger.warning(
                "%s is missing or names no published run; using the newest published run %s",
                results / LATEST,
                published[-1],
            )
            return runs_dir / published[-1]
        pending = pending_run_dirs(results)
        detail = f" ({len(pending)} being written: {', '.join(pending)})" if pending else ""
        raise NoPublishedRunError(f"no published run yet in {results}{detail}")
    if not run or run.startswith(HIDDEN_PREFIX) or "/" in run or os.sep in run:
        raise RunNotFoundError(
            f"{run!r} is not a run id (names starting with '.' are runs being written)"
        )
    path = runs_dir / run
    if path.is_dir():
        return path
    if (results / REJECTED_DIR / run).is_dir():
        raise RunNotFoundError(
            f"run {run} was rejected (its model lost to the baseline) and has no graph to draw; "
            f"its metrics are in {results / REJECTED_DIR / run}"
        )
    if any(name == TMP_PREFIX + run for name in pending_run_dirs(results)):
        raise IncompleteRunError(f"run {run} is still being written; try again once published")
    newest = f"; newest published run is {published[-1]}" if published else "; none published yet"
    raise RunNotFoundError(f"run {run} not found in {runs_dir}{newest}")


# --- reading -----------------------------------------------------------------------------------


def read_document(path: Path, run_id: str, kind: type[T]) -> T:
    """A run's manifest or metrics, typed; IncompleteRunError naming the file if it is absent,
    cut short or not of the documented shape."""
    if not path.is_file():
        raise IncompleteRunError(f"run {run_id} is incomplete: {path.name} is missing ({path})")
    try:
        return kind.from_json(path.read_text(encoding="utf-8"), path.name)
    except UnicodeDecodeError as exc:
        raise IncompleteRunError(f"run {run_id}: {path.name} is not UTF-8: {exc}") from None
    except RunFormatError as exc:
        raise IncompleteRunError(f"run {run_id}: {exc}") from None


def csv_parts(path: Path) -> list[Path]:
    """The files that make up a CSV: the file itself, or the ``part-*.csv`` files of a folder."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.glob(CSV_PART_GLOB))
    return []


def _header(part: Path) -> list[str] | None:
    """Column names on the first line of ``part``; None for a zero-byte file."""
    with part.open("r", encoding="utf-8", newline="") as handle:
        line = handle.readline()
    if not line:
        return None
    return [name.strip().strip('"') for name in line.rstrip("\r\n").split(",")]


def _holds_nul(part: Path) -> bool:
    """Whether the file has a NUL byte: an id may hold one, and pandas' C engine would cut the
    text there (docs/run-format.md); such a file is read with the Python engine."""
    with part.open("rb") as handle:
        while block := handle.read(1 << 20):
            if b"\0" in block:
                return True
    return False


def _ends_with_newline(part: Path) -> bool:
    """True when the file's last byte ends a line (Spark and pandas end every row with one)."""
    with part.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_csv(path: Path, dtypes: Mapping[str, str], run_id: str) -> pd.DataFrame:
    """The required columns of a run's CSV (file or part folder), typed and checked complete.

    Only the columns in ``dtypes`` are read. A missing file, a missing column, a row cut short
    or a file ending mid-line raises IncompleteRunError naming the file.
    """
    name = path.name
    parts = csv_parts(path)
    if not parts:
        what = "has no part-*.csv files" if path.is_dir() else "is missing"
        raise IncompleteRunError(f"run {run_id} is incomplete: {name} {what} ({path})")
    columns = list(dtypes)
    frames: list[pd.DataFrame] = []
    for part in parts:
        where = name if part == path else f"{name}/{part.name}"
        header = _header(part)
        if header is None:
            if part == path:
                raise IncompleteRunError(f"run {run_id}: {where} is empty (no header; truncated?)")
            continue  # Spark may leave an empty part for an empty partition
        missing = [c for c in columns if c not in header]
        if missing:
            raise IncompleteRunError(
                f"run {run_id}: {where} lacks column(s) {', '.join(missing)} "
                f"(header: {','.join(header)})"
            )
        if not _ends_with_newline(part):
            raise IncompleteRunError(f"run {run_id}: {where} ends mid-line (truncated?)")
        try:
            frame = pd.read_csv(
                part,
                usecols=columns,
                dtype=dict(dtypes),
                keep_default_na=False,
                na_values={c: [""] for c in columns},
                engine="python" if _holds_nul(part) else "c",
            )
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise IncompleteRunError(
                f"run {run_id}: {where} is malformed (truncated?): {first}"
            ) from exc
        frames.append(frame[columns])
    if not frames:  # a folder of empty parts
        frames = [pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})]
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(table) and table.isna().to_numpy().any():
        bad = table.columns[table.isna().any()].tolist()
        raise IncompleteRunError(
            f"run {run_id}: {name} has empty values in {', '.join(bad)} (truncated row?)"
        )
    return table


def _check_declared_count(table: pd.DataFrame, declared: int, name: str, run_id: str) -> None:
    """Fewer rows than metrics.json's graph section declares means the CSV was cut short."""
    if len(table) < declared:
        raise IncompleteRunError(
            f"run {run_id}: {name} has {len(table):,} rows but metrics.json declares "
            f"{declared:,} (truncated?)"
        )
    if len(table) > declared:
        logger.warning(
            "run %s: %s has %d rows, metrics.json declares %d", run_id, name, len(table),
            declared,
        )


def load_run(path: Path, *, allow_empty: bool = False) -> Run:
    """Read and check a published run directory; the input of every plot and of the report."""
    path = Path(path)
    run_id = path.name
    if run_id.startswith(HIDDEN_PREFIX):
        raise IncompleteRunError(f"{path} is a run being written; readers ignore '.' names")
    if not path.is_dir():
        raise RunNotFoundError(f"run directory not found: {path}")
    manifest = read_document(path / MANIFEST, run_id, Manifest)
    metrics = read_document(path / METRICS, run_id, Metrics)
    vertices = read_csv(path / VERTICES_CSV, VERTEX_DTYPES, run_id)
    edges = read_csv(path / EDGES_CSV, EDGE_DTYPES, run_id)
    popular = read_csv(path / POPULAR_CSV, POPULAR_DTYPES, run_id)
    if metrics.graph is not None:
        _check_declared_count(edges, metrics.graph.edges, EDGES_CSV, run_id)
        _check_declared_count(vertices, metrics.graph.vertices, VERTICES_CSV, run_id)
    if len(edges) == 0 and not allow_empty:
        raise EmptyRunError(f"run {run_id} has no recommendation edges: nothing to draw")
    files = {name: path / name for name in (*CSV_FILES, RECOMMENDATIONS) if (path / name).exists()}
    logger.info(
        "read run %s: %d vertices, %d edges, %d popular products",
        run_id, len(vertices), len(edges), len(popular),
    )
    return Run(run_id, path, manifest, metrics, vertices, edges, popular, files)


# --- quality over runs -------------------------------------------------------------------------


def _history_row(folder: Path, status: str) -> dict[str, Any] | None:
    """One run's figures for the quality-over-runs plot; None (logged) if unreadable."""
    try:
        manifest = read_document(folder / MANIFEST, folder.name, Manifest)
        metrics = read_document(folder / METRICS, folder.name, Metrics)
    except IncompleteRunError as exc:
        logger.warning("skipped in quality over runs: %s", exc)
        return None
    row: dict[str, Any] = {
        "run_id": folder.name,
        "status": status,
        "sequence": manifest.sequence,
        "created_at": manifest.created_at,
        "k": metrics.k,
        "training_set": manifest.events.training_set,
        "last_batch_id": manifest.last_batch_id,
    }
    for side, figures in (("model", metrics.model), ("baseline", metrics.baseline)):
        for name in METRIC_NAMES:
            row[f"{side}_{name}"] = figures.get(name)
    beyond = asdict(metrics.beyond_accuracy) if metrics.beyond_accuracy is not None else {}
    for name in BEYOND_ACCURACY_NAMES:  # the model's lists only: the baseline has no factors
        row[f"model_{name}"] = beyond.get(name)
    return row


HISTORY_COLUMNS: tuple[str, ...] = (
    "run_id", "status", "sequence", "created_at", "k", "training_set", "last_batch_id",
    *(f"{side}_{name}" for side in ("model", "baseline") for name in METRIC_NAMES),
    *(f"model_{name}" for name in BEYOND_ACCURACY_NAMES),
)


def load_history(results: Path) -> pd.DataFrame:
    """Metrics of every published and rejected run, oldest first: one row per run."""
    results = Path(results)
    rows: list[dict[str, Any]] = []
    for status, folder, ids in (
        (PUBLISHED, results / RUNS_DIR, published_run_ids(results)),
        (REJECTED, results / REJECTED_DIR, rejected_run_ids(results)),
    ):
        for run_id in ids:
            row = _history_row(folder / run_id, status)
            if row is not None:
                rows.append(row)
    table = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    table["created_at"] = pd.to_datetime(table["created_at"], utc=True, errors="coerce")
    table["sequence"] = pd.to_numeric(table["sequence"], errors="coerce")
    for name in HISTORY_COLUMNS[6:]:  # last_batch_id and the metrics
        table[name] = pd.to_numeric(table[name], errors="coerce")
    return table.sort_values(["run_id", "status"], kind="stable").reset_index(drop=True)


def split_vertices(vertices: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users, products) rows of the vertex table."""
    kinds = vertices[VERTEX_TYPE]
    return vertices[kinds == USER_TYPE], vertices[kinds == PRODUCT_TYPE]


def relative_link(target: Path, start: Path) -> str:
    """A relative URL from folder ``start`` to ``target`` that works from disk (file://)."""
    rel = os.path.relpath(Path(target).resolve(), Path(start).resolve())
    return "/".join(rel.split(os.sep))


def describe_sizes(parts: Sequence[Path]) -> int:
    """Total size in bytes of a CSV's files."""
    return sum(p.stat().st_size for p in parts)
