"""Entrypoint of the streaming job: `spark-submit spark_app/main.py --config conf/local.yaml`.

Loads and validates the config, builds the SparkSession, checks the broker, and runs the
query until it is stopped (SIGTERM/Ctrl-C stop it after the batch in progress).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script by spark-submit: make `spark_app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys_contract.config import AppConfig, load_config
from spark_app.errors import RecsysError

log = logging.getLogger("spark_app")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="spark_app/main.py",
        description="Stream sales from Kafka, validate and store them exactly once, and "
        "train/publish ALS recommendation runs every `training.threshold` new events.",
    )
    parser.add_argument("--config", type=Path, help="YAML file overriding conf/defaults.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override one setting, e.g. "
                        "--set training.threshold=500 (repeatable)")
    parser.add_argument("--bootstrap-servers", help="shortcut for kafka.bootstrap_servers")
    parser.add_argument("--topic", help="shortcut for kafka.topic")
    parser.add_argument("--threshold", type=int, help="shortcut for training.threshold")
    parser.add_argument("--available-now", action="store_true",
                        help="process what the topic holds now, then stop")
    parser.add_argument("--log-level", default="INFO", help="Python log level (default INFO)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> AppConfig:
    overrides = list(args.overrides)
    for key, value in (("kafka.bootstrap_servers", args.bootstrap_servers),
                       ("kafka.topic", args.topic), ("training.threshold", args.threshold)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.available_now:
        overrides.append("stream.available_now=true")
    return load_config(args.config, overrides)


def run(cfg: AppConfig) -> None:
    from spark_app.session import create_session
    from spark_app.stream.batch import BatchProcessor, BatchSettings
    from spark_app.stream.job import ProgressLogger, StopFlag, check_broker, kafka_stream, run_query
    from spark_app.stream.trainers import trainer_for

    check_broker(cfg.kafka.bootstrap_servers, cfg.kafka.topic, cfg.kafka.connect_timeout_seconds)
    stop = StopFlag()
    stop.install()
    spark = create_session(
        app_name=cfg.spark.app_name, master=cfg.spark.master,
        shuffle_partitions=cfg.spark.shuffle_partitions, extra_conf=cfg.spark.extra_conf,
    )
    state = cfg.paths.state
    processor = BatchProcessor(
        BatchSettings(
            max_message_bytes=cfg.stream.max_message_bytes,
            max_quantity=cfg.stream.max_quantity,
            max_future_seconds=cfg.stream.max_future_seconds,
            min_timestamp=datetime.fromisoformat(cfg.stream.min_timestamp),
            threshold=cfg.training.threshold,
            window_events=cfg.training.window_events,
            max_wait_seconds=cfg.training.max_wait_seconds,
            events_dir=state / "events",
            quarantine_dir=cfg.paths.results / "quarantine",
            state_dir=state,
            catch_up=cfg.training.catch_up,
        ),
        trainer_for(cfg),
    )
    spark.streams.addListener(
        ProgressLogger(processor, cfg.training.threshold, cfg.stream.progress_every_batches)
    )
    log.info("reading %s from %s; training every %d new events; state in %s",
             cfg.kafka.topic, cfg.kafka.bootstrap_servers, cfg.training.threshold, state)
    stream = kafka_stream(
        spark, bootstrap_servers=cfg.kafka.bootstrap_servers, topic=cfg.kafka.topic,
        starting_offsets=cfg.kafka.starting_offsets,
        max_offsets_per_trigger=cfg.kafka.max_offsets_per_trigger,
        fail_on_data_loss=cfg.kafka.fail_on_data_loss,
        consumer_options=cfg.kafka.consumer_options,
    )
    run_query(stream, processor, checkpoint=state / "checkpoint",
              trigger_interval_seconds=cfg.stream.trigger_interval_seconds,
              available_now=cfg.stream.available_now, stop=stop)
    ledger = processor.ledger
    log.info("stopped: %d valid and %d quarantined events stored, %d training runs",
             ledger.total_valid, ledger.total_quarantined, len(ledger.trainings))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        run(config_from_args(args))
    except RecsysError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
