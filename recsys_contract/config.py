"""Every part's settings: conf/defaults.yaml, overridden by a file and by `key=value` pairs.

`load_config()` reads everything once at start and validates it; a wrong key or value raises
`InvalidConfigError` naming the key and where the value came from (the defaults, the file, or
the `--set` pair). Types are strict: YAML's `true`, `1.5` or `"10"` is not taken for an integer
(a float setting does take an integer). Library code receives plain values, not this object.
"""

from __future__ import annotations

import argparse
import copy
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from recsys_contract.errors import InvalidConfigError

DEFAULTS_PATH = Path(__file__).resolve().parent.parent / "conf" / "defaults.yaml"
# Mappings whose keys are free (not known in advance): an override adds or replaces entries.
FREE_MAPPINGS = ("extra_conf", "consumer_options")
# Kafka consumer settings the job sets itself, or that Spark's Kafka source refuses.
RESERVED_CONSUMER_OPTIONS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "auto.offset.reset",
        "enable.auto.commit",
        "key.deserializer",
        "value.deserializer",
        "interceptor.classes",
    }
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant with its offset (`2000-01-01T00:00:00Z`), or ValueError saying so."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an ISO-8601 instant such as 2000-01-01T00:00:00Z, got {text!r}"
        ) from None
    if instant.tzinfo is None:
        raise ValueError(
            f"{text!r} has no time zone; add Z or an offset, e.g. 2000-01-01T00:00:00Z"
        )
    return instant


class KafkaConfig(_Section):
    bootstrap_servers: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    starting_offsets: Literal["earliest", "latest"]
    max_offsets_per_trigger: int = Field(ge=0)
    fail_on_data_loss: bool
    connect_timeout_seconds: float = Field(gt=0)
    topic_wait_seconds: float = Field(ge=0)
    consumer_options: dict[str, str] = Field(default_factory=dict)

    @field_validator("consumer_options", mode="before")
    @classmethod
    def _consumer_options(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for key in value:
            if str(key) in RESERVED_CONSUMER_OPTIONS:
                raise ValueError(
                    f"{key!r} is set by the job itself (or refused by Spark's Kafka source); "
                    "remove it from kafka.consumer_options"
                )
        return {str(k): str(v) for k, v in value.items()}

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value


class StreamConfig(_Section):
    trigger_interval_seconds: float = Field(ge=0)
    available_now: bool
    max_message_bytes: int = Field(gt=0)
    max_quantity: int = Field(gt=0)
    max_future_seconds: int = Field(ge=0)
    min_timestamp: str
    min_rating: float
    max_rating: float
    quarantine_max_bytes: int = Field(ge=0)
    progress_every_batches: int = Field(gt=0)

    @field_validator("min_timestamp", mode="before")
    @classmethod
    def _instant(cls, value: Any) -> Any:
        # YAML reads an unquoted 2000-01-01T00:00:00Z as a datetime, 2000-01-01 as a date.
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, date):
            raise ValueError(f"{value} is a date; give an instant, e.g. {value}T00:00:00Z")
        if isinstance(value, str):
            parse_instant(value)
        return value

    @field_validator("max_rating")
    @classmethod
    def _rating_range(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_rating")
        if low is not None and value < low:
            raise ValueError(f"max_rating is below min_rating ({low})")
        return value

    @property
    def min_instant(self) -> datetime:
        """`min_timestamp` as an aware datetime."""
        return parse_instant(self.min_timestamp)


class TrainingConfig(_Section):
    threshold: int = Field(gt=0)
    max_wait_seconds: float = Field(ge=0)
    window_events: int = Field(ge=0)
    runner: Literal["als", "record"]
    catch_up: Literal["exact", "latest"]
    warmup_events: int = Field(ge=0)


class PathsConfig(_Section):
    # A plain local path or a Hadoop filesystem URI (file:///..., hdfs://namenode:port/...):
    # kept as text, since a Path would fold the `//` of a URI (spark_app/storage.py).
    results: str = Field(min_length=1)
    state: str = Field(min_length=1)


class AlsConfig(_Section):
    implicit_prefs: bool
    rank: int = Field(gt=0)
    max_iter: int = Field(gt=0)
    reg_param: float = Field(ge=0)
    alpha: float = Field(ge=0)
    seed: int
    num_blocks: int = Field(ge=0)


class EvaluationConfig(_Section):
    split: Literal["random", "latest"]
    test_fraction: float = Field(gt=0, lt=1)
    k: int = Field(gt=0)
    seed: int
    accept_metric: Literal[
        "precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "coverage"
    ]
    accept_margin: float = Field(ge=0, lt=1)
    rmse_margin: float = Field(ge=0, lt=1)
    bias_reg: float = Field(ge=0)
    refit_on_all_pairs: bool


class GridPoint(_Section):
    rank: int = Field(gt=0)
    reg_param: float = Field(ge=0)
    alpha: float = Field(ge=0)


class SelectionConfig(_Section):
    every_n_runs: int = Field(ge=0)
    validation_fraction: float = Field(gt=0, lt=1)
    seed: int
    time_budget_seconds: float = Field(gt=0)
    grid: list[GridPoint] = Field(min_length=1)


class RecommendConfig(_Section):
    top_n: int = Field(gt=0)
    exclude_purchased: bool
    popular_n: int = Field(gt=0)


class GraphConfig(_Section):
    engine: Literal["auto", "graphframes", "dataframe"]
    pagerank_iterations: int = Field(gt=0)
    reset_probability: float = Field(gt=0, lt=1)


class SparkConfig(_Section):
    master: str = Field(min_length=1)
    app_name: str = Field(min_length=1)
    shuffle_partitions: int = Field(gt=0)
    extra_conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("extra_conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value


class ServeConfig(_Section):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    default_n: int = Field(gt=0)
    max_n: int = Field(gt=0)
    rank_ahead_n: int = Field(ge=0)
    reload_poll_seconds: float = Field(gt=0)
    catch_up_seconds: float = Field(ge=0)
    api_key: str
    fold_in: bool
    kafka_group: str = Field(min_length=1)
    fold_in_max_users: int = Field(ge=0)
    max_url_bytes: int = Field(ge=64)
    access_log: bool

    @model_validator(mode="after")
    def _default_within_max(self) -> ServeConfig:
        if self.default_n > self.max_n:
            raise ValueError(
                f"serve.default_n ({self.default_n}) must not exceed serve.max_n ({self.max_n})"
            )
        return self


class MetricsConfig(_Section):
    enabled: bool
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class AppConfig(_Section):
    kafka: KafkaConfig
    stream: StreamConfig
    training: TrainingConfig
    paths: PathsConfig
    als: AlsConfig
    evaluation: EvaluationConfig
    selection: SelectionConfig
    recommend: RecommendConfig
    graph: GraphConfig
    spark: SparkConfig
    serve: ServeConfig
    metrics: MetricsConfig


DEFAULTS_SOURCE = "conf/defaults.yaml"
SET_FLAG = "--set"


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's multi-line message as one line: the problem and where (PyYAML raises a plain
    ValueError for a timestamp-like scalar with an impossible date)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


def _read_yaml(path: Path, given_as: str = "--config") -> dict[str, Any]:
    if not path.is_file():
        raise InvalidConfigError(
            f"config file {path} (given as {given_as}) does not exist; "
            f"point {given_as} to an existing file"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, ValueError) as exc:
        raise InvalidConfigError(
            f"config file {path} is not valid YAML: {_yaml_problem(exc)}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any], where: str,
           source: str) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        dotted = f"{where}{key}"
        if key not in merged:
            raise InvalidConfigError(
                f"unknown config key {dotted!r} in {source}; known keys here: "
                f"{', '.join(sorted(base))}"
            )
        if isinstance(merged[key], dict) and key not in FREE_MAPPINGS:
            if not isinstance(value, dict):
                raise InvalidConfigError(
                    f"config key {dotted!r} in {source} must be a mapping of its keys")
            merged[key] = _merge(merged[key], value, dotted + ".", source)
        elif isinstance(merged[key], dict):
            if value is not None and not isinstance(value, dict):
                raise InvalidConfigError(
                    f"config key {dotted!r} in {source} must be a mapping, got {value!r}")
            merged[key] = {**merged[key], **(value or {})}
        else:
            merged[key] = value
    return merged


def _override_key(pair: str) -> tuple[list[str], str]:
    """(the key's path, the raw value) of one `section.key=value` pair."""
    key, sep, raw = pair.partition("=")
    if not sep or not key.strip():
        raise InvalidConfigError(f"{SET_FLAG} {pair!r} must look like section.key=value")
    parts = key.strip().split(".")
    free = next((i for i, part in enumerate(parts[:-1]) if part in FREE_MAPPINGS), None)
    if free is not None:  # the rest is one key of a free mapping, dots and all
        parts = [*parts[: free + 1], ".".join(parts[free + 1 :])]
    return parts, raw


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ["training.threshold=500", ...] into a nested mapping (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        parts, raw = _override_key(pair)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except (yaml.YAMLError, ValueError) as exc:
            raise InvalidConfigError(
                f"{SET_FLAG} {pair}: the value is not valid YAML: {_yaml_problem(exc)}"
            ) from None
        node = nested
        *parents, leaf = parts
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidConfigError(f"{SET_FLAG} {pair} conflicts with an earlier {SET_FLAG}")
        node[leaf] = value
    return nested


def _holds(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    """Whether the nested mapping `data` sets the key at `loc` (or a key inside it)."""
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _source_of(loc: tuple[Any, ...], path: Path | str | None, file_data: dict[str, Any],
               pairs: list[str]) -> str:
    """Where the value at `loc` came from: the last `--set` pair, else the file, else the
    defaults."""
    dotted = ".".join(str(p) for p in loc)
    for pair in reversed(pairs):
        key = ".".join(_override_key(pair)[0])
        if key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + "."):
            return f"{SET_FLAG} {pair}"
    if path is not None and _holds(file_data, loc):
        return str(path)
    return DEFAULTS_SOURCE


def load_config(
    path: Path | str | None = None,
    overrides: list[str] | None = None,
    *,
    path_given_as: str = "--config",
) -> AppConfig:
    """Defaults, then the file at `path`, then `overrides`; validated, or InvalidConfigError.

    `path_given_as` names how the file was chosen (`--config`, or an environment variable such
    as RECSYS_CONFIG), for the message when it is missing.
    """
    data = _read_yaml(DEFAULTS_PATH, DEFAULTS_SOURCE)
    file_data: dict[str, Any] = {}
    if path is not None:
        file_data = _read_yaml(Path(path), path_given_as)
        data = _merge(data, file_data, "", str(path))
    pairs = list(overrides or [])
    if pairs:
        data = _merge(data, parse_overrides(pairs), "", SET_FLAG)
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err, _source_of(err["loc"], path, file_data, pairs))
                             for err in exc.errors())
        raise InvalidConfigError(f"invalid configuration: {problems}") from None


def _problem(err: Any, source: str) -> str:
    """`key: what is wrong (got value; from source)`, on one line."""
    message = str(err["msg"]).removeprefix("Value error, ")
    got = repr(err.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    return f"{'.'.join(str(p) for p in err['loc'])}: {message} (got {got}; from {source})"


# --- the command lines of the parts that read these settings -------------------------------------


def add_settings_arguments(parser: argparse.ArgumentParser, example: str,
                           shortcuts: dict[str, str]) -> None:
    """--config FILE, --set KEY=VALUE (repeatable) and a shortcut flag per setting:
    {"--topic": "kafka.topic", ...}; settings_from_args() turns them into the settings."""
    parser.add_argument("--config", type=Path, help="YAML file overriding conf/defaults.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"override one setting, e.g. --set {example} (repeatable)")
    for flag, key in shortcuts.items():
        parser.add_argument(flag, dest=_dest(flag), help=f"shortcut for {key}")


def settings_from_args(args: argparse.Namespace, shortcuts: dict[str, str],
                       extra: list[str] | None = None) -> AppConfig:
    """The settings: defaults, --config, the shortcut flags given, --set, then `extra`.

    A --config that names what $RECSYS_CONFIG holds (scripts/submit, docker-compose) is
    reported as RECSYS_CONFIG when it is wrong."""
    overrides = [f"{key}={getattr(args, _dest(flag))}" for flag, key in shortcuts.items()
                 if getattr(args, _dest(flag)) is not None]
    overrides += [*args.overrides, *(extra or [])]
    from_env = os.environ.get("RECSYS_CONFIG")
    given_as = ("RECSYS_CONFIG" if from_env and args.config is not None
                and Path(from_env) == args.config else "--config")
    return load_config(args.config, overrides, path_given_as=given_as)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")
