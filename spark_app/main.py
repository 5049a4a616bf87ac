"""Entrypoint of the streaming job: `spark-submit spark_app/main.py --config conf/local.yaml`.

Loads and validates the config, checks the Spark master, the broker and the topic, builds the
SparkSession and runs the query until it is stopped: SIGTERM or Ctrl-C (to this process or to
spark-submit's) stop it after the batch in progress. Exit codes: 0 stopped, 1 a runtime
failure, 2 refused at start, 74 an I/O error (spark_app/errors.py); each failure is one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script by spark-submit: make `spark_app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys_contract.config import AppConfig, add_settings_arguments, settings_from_args
from spark_app.errors import EXIT_START, EXIT_STOPPED, RecsysError
from spark_app.stream.ledger import Ledger
from spark_app.stream.stop import StopFlag

log = logging.getLogger("spark_app")
SHORTCUTS = {"--bootstrap-servers": "kafka.bootstrap_servers", "--topic": "kafka.topic",
             "--threshold": "training.threshold"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="spark_app/main.py",
        description="Stream sales from Kafka, validate and store them exactly once, and "
        "train/publish ALS recommendation runs every `training.threshold` new events.",
    )
    add_settings_arguments(parser, "training.threshold=500", SHORTCUTS)
    parser.add_argument("--available-now", action="store_true",
                        help="process what the topic holds now, then stop")
    parser.add_argument("--log-level", default="INFO", help="Python log level (default INFO)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> AppConfig:
    return settings_from_args(
        args, SHORTCUTS, ["stream.available_now=true"] if args.available_now else [])


def run(cfg: AppConfig, stop: StopFlag) -> None:
    """Check the services, build the session, run the query until it stops; log `stopped:`."""
    from spark_app.observe.observer import JobObserver, OffsetsListener
    from spark_app.session import create_session
    from spark_app.storage import Storage, join
    from spark_app.stream.batch import BatchProcessor, BatchSettings
    from spark_app.stream.job import ProgressLogger, kafka_stream, run_query
    from spark_app.stream.trainers import trainer_for
    from spark_app.stream.warmup import WarmUp, remove_leftovers

    check_services(cfg, stop)
    if stop.is_set():
        log.info("stopped (%s): before the streaming query started", stop.reason)
        return
    spark = create_session(
        app_name=cfg.spark.app_name, master=cfg.spark.master,
        shuffle_partitions=cfg.spark.shuffle_partitions, extra_conf=cfg.spark.extra_conf,
    )
    observer: JobObserver | None = None
    warmup: WarmUp | None = None
    try:
        stop.install()  # again: the SparkContext replaced the SIGINT handler by its own
        stop.install_jvm(spark.sparkContext._gateway)
        storage = Storage(spark)
        state = storage.check_root(cfg.paths.state, "paths.state")
        results = storage.check_root(cfg.paths.results, "paths.results")
        observer = JobObserver.start(cfg, storage, results)  # status file, metrics endpoint
        remove_leftovers(storage, state)
        warmup = WarmUp.of(spark, cfg, state, storage)
        trainer = trainer_for(cfg) if warmup is None else warmup.before(trainer_for(cfg))
        processor = BatchProcessor(BatchSettings.from_config(cfg, state, results),
                                   stop.guard(trainer), storage=storage, observer=observer)
        observer.started(processor.ledger)
        if warmup is not None and processor.ledger.pending_training is None:
            warmup.start()  # a pending run trains at the first batch: nothing to warm
        spark.streams.addListener(
            ProgressLogger(processor, cfg.training.threshold, cfg.stream.progress_every_batches)
        )
        spark.streams.addListener(OffsetsListener(observer))
        log.info("reading %s from %s; training every %d new events; state in %s",
                 cfg.kafka.topic, cfg.kafka.bootstrap_servers, cfg.training.threshold, state)
        stream = kafka_stream(
            spark, bootstrap_servers=cfg.kafka.bootstrap_servers, topic=cfg.kafka.topic,
            starting_offsets=cfg.kafka.starting_offsets,
            max_offsets_per_trigger=cfg.kafka.max_offsets_per_trigger,
            fail_on_data_loss=cfg.kafka.fail_on_data_loss,
            consumer_options=cfg.kafka.consumer_options,
        )
        run_query(stream, processor, checkpoint=join(state, "checkpoint"),
                  trigger_interval_seconds=cfg.stream.trigger_interval_seconds,
                  available_now=cfg.stream.available_now, stop=stop,
                  folders={"paths.state": state, "paths.results": results})
    finally:
        if warmup is not None:
            warmup.cancel()  # its jobs, before the session goes
        if observer is not None:
            observer.close()  # the status file says `stopped`, the endpoint closes
        # Before the driver exits, so Spark's listener bus delivers its last events to the
        # Python listener while it still answers (else Py4J logs an error at every exit).
        spark.stop()
    log.info("stopped%s: %s", f" ({stop.reason})" if stop.reason else "",
             stopped_summary(processor.ledger))


def check_services(cfg: AppConfig, stop: StopFlag) -> None:
    """Before Spark starts: the master and the broker answer, the topic exists (or a one-line
    error). Under spark-submit, first take the JVM's signals over: it already runs."""
    from spark_app.session import check_spark_master, launched_by_spark_submit, submitted_master
    from spark_app.stream.job import check_kafka

    master = cfg.spark.master
    if launched_by_spark_submit():
        from pyspark import SparkContext

        master = submitted_master()
        stop.install_jvm(SparkContext._gateway)
    check_spark_master(master)
    check_kafka(cfg.kafka.bootstrap_servers, cfg.kafka.topic, cfg.kafka.connect_timeout_seconds,
                cfg.kafka.topic_wait_seconds, stop=stop.event)


def stopped_summary(ledger: Ledger) -> str:
    """The counts of the `stopped:` line, and the run a stop left pending if any."""
    summary = (f"{ledger.total_valid} valid and {ledger.total_quarantined} quarantined events "
               f"stored, {len(ledger.trainings)} training runs")
    if ledger.pending_training is not None:
        summary += (f"; training run {ledger.pending_training.sequence} pending, it runs at "
                    "the next start")
    return summary


def use_submitters_stderr() -> None:
    """Under spark-submit, send the driver's stderr (its log) to spark-submit's own stderr.

    Spark's PythonRunner joins the Python driver's stdout and stderr into one pipe that it
    copies to its stdout, so the job's log would come out on spark-submit's stdout. On Linux
    the JVM's stderr is /proc/<parent>/fd/2: when that is a pipe or a terminal (a shell, a
    container engine, a supervisor) the driver's stderr is pointed at it. A regular file is
    left alone (a second handle on it would write over the JVM's lines), as is anything that
    cannot be opened: there the log stays on spark-submit's stdout.
    """
    from spark_app.session import launched_by_spark_submit

    if not launched_by_spark_submit():
        return
    try:
        fd = os.open(f"/proc/{os.getppid()}/fd/2", os.O_WRONLY)
    except OSError:
        return
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            sys.stderr.flush()
            os.dup2(fd, sys.stderr.fileno())
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    stop = StopFlag()
    stop.install()  # first: a Ctrl-C during start-up is a clean stop too
    args = parse_args(argv)
    use_submitters_stderr()
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        run(config_from_args(args), stop)
    except RecsysError as exc:
        log.error("%s", exc)
        return getattr(exc, "exit_code", EXIT_START)
    finally:
        stop.uninstall_jvm()
    return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
