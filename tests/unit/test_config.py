"""Configuration: defaults load, overrides merge, bad keys and values are named."""

from __future__ import annotations

import pytest

from recsys_contract.config import load_config
from spark_app.errors import InvalidConfigError


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
