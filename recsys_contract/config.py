"""Every part's settings: conf/defaults.yaml, overridden by a file and by `key=value` pairs.

`load_config()` reads everything once at start and validates it; a wrong key or value raises
`InvalidConfigError` naming the key. Library code receives plain values, not this object.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    progress_every_batches: int = Field(gt=0)


class TrainingConfig(_Section):
    threshold: int = Field(gt=0)
    max_wait_seconds: float = Field(ge=0)
    window_events: int = Field(ge=0)
    runner: Literal["als", "record"]
    catch_up: Literal["exact", "latest"]


class PathsConfig(_Section):
    results: Path
    state: Path


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
    refit_on_all_pairs: bool


class RecommendConfig(_Section):
    top_n: int = Field(gt=0)
    exclude_purchased: bool
    popular_n: int = Field(gt=0)
    strategy: Literal["blocked", "spark"]


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


class AppConfig(_Section):
    kafka: KafkaConfig
    stream: StreamConfig
    training: TrainingConfig
    paths: PathsConfig
    als: AlsConfig
    evaluation: EvaluationConfig
    recommend: RecommendConfig
    graph: GraphConfig
    spark: SparkConfig


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidConfigError(f"config file {path} does not exist; pass an existing --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        dotted = f"{where}{key}"
        if key not in merged:
            raise InvalidConfigError(
                f"unknown config key {dotted!r}; known keys here: {', '.join(sorted(base))}"
            )
        if isinstance(merged[key], dict) and key not in FREE_MAPPINGS:
            if not isinstance(value, dict):
                raise InvalidConfigError(f"config key {dotted!r} must be a mapping")
            merged[key] = _merge(merged[key], value, dotted + ".")
        elif isinstance(merged[key], dict):
            merged[key] = {**merged[key], **(value or {})}
        else:
            merged[key] = value
    return merged


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ["training.threshold=500", ...] into a nested mapping (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidConfigError(f"override {pair!r} must look like section.key=value")
        node = nested
        parts = key.strip().split(".")
        free = next((i for i, part in enumerate(parts[:-1]) if part in FREE_MAPPINGS), None)
        if free is not None:  # the rest is one key of a free mapping, dots and all
            parts = [*parts[: free + 1], ".".join(parts[free + 1 :])]
        *parents, leaf = parts
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return nested


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> AppConfig:
    """Defaults, then the file at `path`, then `overrides`; validated, or InvalidConfigError."""
    data = _read_yaml(DEFAULTS_PATH)
    if path is not None:
        data = _merge(data, _read_yaml(Path(path)), "")
    if overrides:
        data = _merge(data, parse_overrides(overrides), "")
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        source = f" in {path}" if path else ""
        raise InvalidConfigError(f"invalid configuration{source}: {problems}") from None
