"""Configuration: defaults load, overrides merge, bad keys and values are named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recsys_contract.config import load_config
from spark_app.errors import InvalidConfigError
from spark_app.main import config_from_args, parse_args


def test_defaults_pass_kafka_consumer_options_as_strings() -> None:
    assert load_config().kafka.consumer_options["max.poll.records"] == "20000"


def test_defaults_keep_a_fetch_at_the_end_of_a_partition_from_waiting() -> None:
    # Kafka's default (500 ms) stalled every micro-batch that read up to the end of the topic.
    assert int(load_config().kafka.consumer_options["fetch.max.wait.ms"]) <= 50


def test_defaults_read_micro_batches_of_a_million_records() -> None:
    # Each batch has a fixed cost: batches of 500k ingested 1.26x slower per event.
    assert load_config().kafka.max_offsets_per_trigger >= 1_000_000


def test_a_dotted_consumer_option_can_be_overridden_from_the_command_line() -> None:
    cfg = load_config(overrides=["kafka.consumer_options.max.poll.records=500"])
    assert cfg.kafka.consumer_options["max.poll.records"] == "500"


def test_a_consumer_option_the_job_sets_itself_is_refused_by_name() -> None:
    with pytest.raises(InvalidConfigError, match="group.id"):
        load_config(overrides=["kafka.consumer_options.group.id=mine"])


def test_an_unknown_key_is_named_with_its_section() -> None:
    with pytest.raises(InvalidConfigError, match="'kafka.topik'"):
        load_config(overrides=["kafka.topik=sales"])


def test_a_bad_value_is_named_with_its_key() -> None:
    with pytest.raises(InvalidConfigError, match="training.threshold"):
        load_config(overrides=["training.threshold=0"])


# --- defect 6 of issue 26: wrong types, bad instants, bad YAML, and where a value came from ----


@pytest.mark.parametrize(
    "pair",
    ["training.threshold=true", "training.threshold=1.0", "training.threshold='10'",
     "stream.available_now=1", "stream.available_now=yes please",
     "evaluation.test_fraction=true"],
)
def test_a_value_of_the_wrong_yaml_type_is_refused(pair: str) -> None:
    key = pair.partition("=")[0]
    with pytest.raises(InvalidConfigError, match=rf"{key}: .*from --set {pair}"):
        load_config(overrides=[pair])


def test_a_float_setting_takes_an_integer() -> None:
    assert load_config(overrides=["training.max_wait_seconds=5"]).training.max_wait_seconds == 5


@pytest.mark.parametrize(
    "value", ["yesterday", "2000-01-01", "2000-01-01T00:00:00", "2000-13-01T00:00:00Z"]
)
def test_min_timestamp_must_be_an_iso_instant_with_a_zone(value: str) -> None:
    with pytest.raises(InvalidConfigError, match="stream.min_timestamp"):
        load_config(overrides=[f"stream.min_timestamp={value}"])


def test_min_timestamp_unquoted_in_yaml_is_an_instant(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("stream:\n  min_timestamp: 2001-02-03T04:05:06Z\n")
    assert load_config(config).stream.min_instant == datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_a_set_value_that_is_not_yaml_is_one_line_naming_set() -> None:
    with pytest.raises(InvalidConfigError) as caught:
        load_config(overrides=["training.threshold=[1"])
    message = str(caught.value)
    assert (message.startswith("--set training.threshold=[1: "), "\n" in message) == (True, False)


def test_a_config_file_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("training:\n  threshold: [1\n")
    with pytest.raises(InvalidConfigError, match=r"^config file .*job.yaml is not valid YAML: "
                       r"[^\n]*line \d+[^\n]*$"):
        load_config(config)


def test_an_error_from_set_names_set_not_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("training:\n  threshold: 500\n")
    with pytest.raises(InvalidConfigError) as caught:
        load_config(config, ["training.threshold=-5"])
    message = str(caught.value)
    assert ("from --set training.threshold=-5" in message, str(config) in message) == (True, False)


def test_an_error_from_the_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("training:\n  threshold: -5\n")
    with pytest.raises(InvalidConfigError, match=rf"training.threshold: .*from {config}\)"):
        load_config(config, ["stream.max_quantity=10"])


def test_an_unknown_key_from_set_names_set() -> None:
    with pytest.raises(InvalidConfigError, match="'training.treshold' in --set"):
        load_config(overrides=["training.treshold=5"])


def test_a_missing_recsys_config_file_is_reported_as_recsys_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("RECSYS_CONFIG", str(missing))
    args = parse_args(["--config", str(missing)])
    with pytest.raises(InvalidConfigError, match=r"given as RECSYS_CONFIG\) does not exist; "
                       "point RECSYS_CONFIG to an existing file"):
        config_from_args(args)


def test_a_missing_config_file_given_by_flag_names_the_flag(tmp_path: Path) -> None:
    args = parse_args(["--config", str(tmp_path / "nope.yaml")])
    with pytest.raises(InvalidConfigError, match=r"given as --config\)"):
        config_from_args(args)
