"""The published run: folders, files, columns, metric names, the `latest` pointer, and the typed
manifest and metrics. docs/run-format.md describes the same thing for people.

Written by the training stage, read by the visualizer, the demo and the API server:

    results/
      runs/<run_id>/        one accepted run, complete or absent (published by one rename)
        manifest.json  metrics.json  vertices.csv  edges.csv  popular.csv  model/
        factors/            users.parquet  items.parquet  purchases.parquet (the API server's)
      rejected/<run_id>/    manifest.json and metrics.json of a run that lost to its baseline
      latest                a pointer file: the id of the newest published run and a newline
      quarantine/           the streaming job's quarantined records
      .tmp-<run_id>/        a run being written: readers ignore every name starting with "."
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from recsys_contract.errors import RunFormatError
from recsys_contract.events import PRODUCT_ID

# --- folders and files ------------------------------------------------------------------------
RUNS_DIR = "runs"
REJECTED_DIR = "rejected"
LATEST = "latest"  # the pointer file (an older layout had a symlink of that name)
HIDDEN_PREFIX = "."  # names readers ignore
TMP_PREFIX = ".tmp-"  # a run being written: .tmp-<run_id>
MODEL_DIR = "model"  # the Spark ALSModel (ALSModel.load)
MANIFEST = "manifest.json"
METRICS = "metrics.json"
VERTICES_CSV = "vertices.csv"
EDGES_CSV = "edges.csv"
POPULAR_CSV = "popular.csv"
CSV_FILES: tuple[str, ...] = (VERTICES_CSV, EDGES_CSV, POPULAR_CSV)
CSV_PART_GLOB = "part-*.csv"  # a CSV too large for one file: a folder of these, each with a header

# --- factors/: what the API server loads (Parquet folders written by Spark) ---------------------
FACTORS_DIR = "factors"
USER_FACTORS = "users.parquet"  # user_id, vector: the model's user factors
ITEM_FACTORS = "items.parquet"  # product_id, vector: the model's item factors
PURCHASES_PARQUET = "purchases.parquet"  # user_id, product_id, quantity: every pair of the run
FACTOR_FILES: tuple[str, ...] = (USER_FACTORS, ITEM_FACTORS, PURCHASES_PARQUET)
SUCCESS_MARKER = "_SUCCESS"  # written by Spark last in each Parquet folder: the folder is whole
VECTOR = "vector"  # list<float> of `rank` numbers (manifest.parameters.als.rank)
PURCHASED_QUANTITY = "quantity"  # double: units of the product the user bought (the ALS rating)

# --- CSV columns --------------------------------------------------------------------------------
VERTEX_ID = "id"  # u:<user_id> or p:<product_id>
VERTEX_TYPE = "type"
VERTEX_LABEL = "label"  # the raw id
IN_DEGREE = "in_degree"
OUT_DEGREE = "out_degree"
PAGERANK = "pagerank"
VERTEX_COLUMNS: tuple[str, ...] = (
    VERTEX_ID, VERTEX_TYPE, VERTEX_LABEL, IN_DEGREE, OUT_DEGREE, PAGERANK,
)
EDGE_SRC = "src"
EDGE_DST = "dst"
SCORE = "score"
RANK = "rank"
EDGE_COLUMNS: tuple[str, ...] = (EDGE_SRC, EDGE_DST, SCORE, RANK)
PURCHASES = "purchases"  # purchase events of a product
QUANTITY_TOTAL = "quantity"  # units of a product bought
POPULAR_COLUMNS: tuple[str, ...] = (RANK, PRODUCT_ID, PURCHASES, QUANTITY_TOTAL)

USER_TYPE = "user"
PRODUCT_TYPE = "product"
USER_VERTEX_PREFIX = "u:"  # a user's and a product's vertex ids never collide
PRODUCT_VERTEX_PREFIX = "p:"

# --- metrics ----------------------------------------------------------------------------------
RANKING_METRIC_NAMES: tuple[str, ...] = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k")
METRIC_NAMES: tuple[str, ...] = ("rmse", *RANKING_METRIC_NAMES, "coverage")
BEYOND_ACCURACY_NAMES: tuple[str, ...] = (
    "catalog_coverage", "gini", "novelty", "intra_list_diversity")
ACCEPT_METRICS: tuple[str, ...] = (*RANKING_METRIC_NAMES, "coverage")
MODEL = "model"
BASELINE = "baseline"

RUN_ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
CREATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def make_run_id(sequence: int, created: datetime) -> str:
    """`YYYYMMDDTHHMMSSZ-<sequence:06d>` (UTC): run ids sort by time."""
    return f"{created.strftime(RUN_ID_TIME_FORMAT)}-{sequence:06d}"


def is_hidden(name: str) -> bool:
    """Whether a readers must skip `name` (a run or file being written)."""
    return name.startswith(HIDDEN_PREFIX)


# --- the `latest` pointer -----------------------------------------------------------------------


def format_latest(run_id: str) -> str:
    """The text of the `latest` pointer file naming `run_id`."""
    if not run_id or is_hidden(run_id) or "/" in run_id:
        raise RunFormatError(f"{run_id!r} is not a publishable run id")
    return run_id + "\n"


def parse_latest(text: str) -> str | None:
    """The run id a `latest` pointer's text names (None if it is empty)."""
    run_id = text.strip()
    if not run_id:
        return None
    if is_hidden(run_id) or "/" in run_id or "\n" in run_id:
        raise RunFormatError(f"the latest pointer holds {text[:80]!r}, not a run id")
    return run_id


# --- typed manifest and metrics -------------------------------------------------------------------

T = TypeVar("T")


def _check(value: Any, kind: Any, where: str) -> Any:
    """`value` if it is of type `kind` (the annotations used below), else RunFormatError."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return _check(value, option, where)
            except RunFormatError:
                continue
        raise RunFormatError(f"{where} is {value!r}, expected {kind}")
    if kind is type(None):
        if value is None:
            return None
        raise RunFormatError(f"{where} is {value!r}, expected null")
    if dataclasses.is_dataclass(kind):
        return _from_dict(kind, value, where)
    if origin is dict:
        key_kind, value_kind = typing.get_args(kind)
        if not isinstance(value, dict):
            raise RunFormatError(f"{where} is {value!r}, expected an object")
        return {str(k): _check(v, value_kind, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        (item_kind, *_) = typing.get_args(kind)
        if not isinstance(value, list | tuple):
            raise RunFormatError(f"{where} is {value!r}, expected a list")
        return origin(_check(v, item_kind, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, kind):
        return value
    raise RunFormatError(f"{where} is {value!r}, expected {kind.__name__}")


def _from_dict(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise RunFormatError(f"{where} is {data!r}, expected an object")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _check(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RunFormatError(f"{where} lacks {f.name!r}")
    return cls(**values)  # keys a reader does not know are ignored (docs/run-format.md)


class _Json:
    """A dataclass read from and written to the JSON of docs/run-format.md."""

    @classmethod
    def from_dict(cls: type[T], data: Any, where: str | None = None) -> T:
        return _from_dict(cls, data, where or cls.__name__)

    @classmethod
    def from_json(cls: type[T], text: str, where: str | None = None) -> T:
        where = where or cls.__name__
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunFormatError(f"{where} is not valid JSON (cut short?): {exc}") from None
        return _from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(dataclasses.asdict(self))  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class EventCounts(_Json):
    """How many events, users, products and pairs a run trained and was tested on."""

    training_set: int
    total_valid: int
    new_since_last_run: int
    users: int = 0
    products: int = 0
    pairs: int = 0
    train_pairs: int = 0
    test_pairs: int = 0


@dataclass(frozen=True)
class KafkaSpan(_Json):
    """The topic, and per partition the [first, last] offsets of the events stored so far.

    `cut`: per partition, the offset of the first record after the run's training cut (every
    valid event before it, in every partition the job had read, is in the run's history; none
    after it). The API server folds in the records from there. Empty where the writer does not
    know it; a reader then takes `offsets[p][1] + 1` (which may skip the events of the batch
    that crossed the threshold after the cut).
    """

    topic: str
    offsets: dict[str, list[int]] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest(_Json):
    """manifest.json: what a run is, what it was trained on, with which settings, how long."""

    run_id: str
    sequence: int
    created_at: str  # CREATED_AT_FORMAT, UTC
    accepted: bool
    reason: str
    events: EventCounts
    window_events: int
    kafka: KafkaSpan
    parameters: dict[str, Any] = field(default_factory=dict)
    timings_seconds: dict[str, float] = field(default_factory=dict)
    spark: dict[str, str] = field(default_factory=dict)
    graph_engine: str | None = None
    # The last micro-batch the job had committed when the run started: the quarantine's
    # batch_id=<N> folders up to it hold what was quarantined before the run (the report
    # counts them per run). None: not recorded (runs written before 2026-12-03).
    last_batch_id: int | None = None
    # [first_seq, cut): the events of the job's store the run trained on; with `sequence` it
    # identifies the training run, found again after a crash (no second folder for it)
    seq_range: list[int] | None = None


@dataclass(frozen=True)
class GraphFigures(_Json):
    """The recommendation graph's size and concentration."""

    vertices: int
    edges: int
    users: int
    products: int
    products_recommended: int
    top1pct_edge_share: float | None = None
    gini_in_degree: float | None = None


@dataclass(frozen=True)
class BeyondAccuracy(_Json):
    """What the served recommendations look like beyond hitting held-out purchases."""

    catalog_coverage: float | None  # share of the catalog recommended to at least one user
    gini: float | None  # Gini of how often each product is recommended (0 = even, 1 = one)
    novelty: float | None  # mean self-information -log2(share of users who bought it)
    intra_list_diversity: float | None  # mean over lists of mean pairwise 1 - cosine (factors)


@dataclass(frozen=True)
class Candidate(_Json):
    """One ALS setting tried by the run's model selection, and its validation figure."""

    parameters: dict[str, float]  # rank, reg_param, alpha
    validation: float | None  # the selection metric on the validation pairs
    fit_seconds: float


@dataclass(frozen=True)
class Selection(_Json):
    """The run's model selection: the candidates tried on a validation split of the training
    pairs (never the test pairs), and the settings chosen; or the run whose choice was reused."""

    metric: str  # the acceptance figure: a ranking metric (implicit) or rmse (explicit)
    chosen: dict[str, float]
    validation_pairs: int = 0
    candidates: tuple[Candidate, ...] = ()
    reused_from: str | None = None  # run id whose choice this run reused (no candidates tried)


@dataclass(frozen=True)
class Metrics(_Json):
    """metrics.json: the model and its baseline on the held-out pairs, and the verdict."""

    k: int
    split: str
    test_users: int
    model: dict[str, float | None]
    baseline: dict[str, float | None]
    accept_metric: str
    accept_margin: float
    accepted: bool
    graph: GraphFigures | None = None
    feedback: str = "implicit"  # implicit | explicit (als.implicit_prefs): what the model fitted
    rmse_against: str = "preference"  # preference (1.0 per held-out pair) | rating
    rmse_pairs: int | None = None  # held-out pairs of known users and products the RMSE covers
    beyond_accuracy: BeyondAccuracy | None = None
    selection: Selection | None = None
