"""`python -m producer`: send simulated (or replayed) sales events to Kafka.

Wires a source (the seeded generator, or a CSV replay) to a transport (Kafka, or stdout with
--dry-run) through the send loop, and reports what was sent and acknowledged.
Exit codes: 0 every record acknowledged; 1 some record failed or stayed unconfirmed, or the
broker could not be reached; 2 bad arguments, or a replay whose timestamps the job would
mostly quarantine (the message names the flag that fixes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from producer.badevents import BAD_KINDS
from producer.errors import ProducerConfigError, ReplayFormatError
from producer.generator import DEFAULT_START, GeneratorConfig, SalesGenerator
from producer.hostile import hostile_records
from producer.progress import PROGRESS_MODES, Progress
from producer.records import RecordChunk
from producer.replay import ColumnMapping, QuarantineForecast, forecast_quarantine, read_replay
from producer.runner import pump
from producer.timefmt import MS_PER_DAY, format_timestamp, now_ms, parse_instant_ms
from producer.transport import (
    COMPRESSION_TYPES,
    KafkaTransport,
    ProducerSettings,
    StdoutTransport,
    ensure_topic,
)
from producer.workers import WorkerPoolTransport
from recsys_contract.config import load_config
from recsys_contract.errors import InvalidConfigError, RecsysError

log = logging.getLogger("producer")

EXAMPLES = """\
examples:
  # 100k synthetic events as fast as possible to the local broker, topic created if missing
  python -m producer --events 100000 --create-topic --partitions 4

  # a live-looking stream: 200 events/s for 10 minutes, 2% malformed on purpose
  python -m producer --rate 200 --duration 600 --bad-ratio 0.02

  # look at the events without Kafka
  python -m producer --events 5 --dry-run

  # replay MovieLens ratings (userId,movieId,rating,timestamp in epoch seconds, 1995-2023)
  # as fast as possible, moved so the last rating is now: every gap kept, none in the future,
  # none before the job's stream.min_timestamp (2000)
  python -m producer --replay ratings.csv --user-col userId --product-col movieId \\
      --rating-col rating --timestamp-col timestamp --rebase-end now

Stop with Ctrl-C: records in flight are flushed and a summary is logged (Ctrl-C twice aborts).
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line, grouped as a newcomer reads it."""
    parser = argparse.ArgumentParser(
        prog="python -m producer",
        description="Sales simulator: sends JSON purchase events (user, product, quantity, "
        "timestamp, price) to a Kafka topic, keyed by user id. Events come from a seeded "
        "generator with planted taste segments, or from a CSV file (--replay).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, metavar="FILE.yaml",
                        help="the settings file the streaming job reads (over "
                        "conf/defaults.yaml): its kafka.bootstrap_servers, kafka.topic and "
                        "kafka.connect_timeout_seconds are this command's defaults, its "
                        "stream.* limits check a replay's timestamps and size the oversized "
                        "bad events")
    _kafka_arguments(parser)
    _amount_and_shop_arguments(parser)
    _replay_arguments(parser)
    _output_arguments(parser)
    return parser


def _kafka_arguments(parser: argparse.ArgumentParser) -> None:
    kafka = parser.add_argument_group("Kafka")
    kafka.add_argument("--bootstrap-servers", metavar="HOST:PORT[,..]",
                       help="brokers to connect to (default: kafka.bootstrap_servers of "
                       "--config)")
    kafka.add_argument("--topic", help="topic to write to (default: kafka.topic of --config)")
    kafka.add_argument("--create-topic", action="store_true",
                       help="create the topic first if it does not exist")
    kafka.add_argument("--partitions", type=_positive_int, default=1, metavar="N",
                       help="partitions of a topic made by --create-topic (default: %(default)s)")
    kafka.add_argument("--replication-factor", type=_positive_int, default=1, metavar="N",
                       help="replicas of a topic made by --create-topic (default: %(default)s)")
    kafka.add_argument("--connect-timeout", type=_non_negative_float, metavar="SECONDS",
                       help="give up if no broker answers within this (default: "
                       "kafka.connect_timeout_seconds of --config)")
    kafka.add_argument("--dry-run", action="store_true",
                       help="write the events to stdout, one JSON per line, instead of Kafka")



def _amount_and_shop_arguments(parser: argparse.ArgumentParser) -> None:
    amount = parser.add_argument_group("how many, how fast")
    amount.add_argument("--events", type=_positive_int, metavar="N",
                        help="stop after N events (default: endless for the generator, the whole "
                        "file for --replay; Ctrl-C or --duration also stop)")
    amount.add_argument("--duration", type=_non_negative_float, metavar="SECONDS",
                        help="stop after this many seconds of sending")
    amount.add_argument("--rate", type=_non_negative_float, default=0.0, metavar="EVENTS_PER_S",
                        help="target events per second; 0 = as fast as possible (default)")

    shop = parser.add_argument_group("synthetic shop (the generator)")
    shop.add_argument("--users", type=_positive_int, default=1000, help="(default: %(default)s)")
    shop.add_argument("--products", type=_positive_int, default=500, help="(default: %(default)s)")
    shop.add_argument("--segments", type=_positive_int, default=5,
                      help="taste segments; each prefers its own product categories "
                      "(default: %(default)s)")
    shop.add_argument("--categories", type=int, default=0, metavar="N",
                      help="product categories; 0 = 2 per segment (default)")
    shop.add_argument("--affinity", type=_ratio, default=0.85,
                      help="share of a user's purchases in the segment's preferred categories "
                      "(default: %(default)s)")
    shop.add_argument("--seed", type=int, default=42,
                      help="same seed, same stream; event ids are '<seed>-<n>' "
                      "(default: %(default)s)")
    shop.add_argument("--id-prefix", default="",
                      help="prefix of event ids, to tell apart runs with the same seed")
    shop.add_argument("--bad-ratio", type=_ratio, default=0.0, metavar="R",
                      help="share of malformed events mixed in, cycling through: "
                      + ", ".join(BAD_KINDS) + " (default: 0)")
    shop.add_argument("--hostile", action="store_true",
                      help="send the hostile corpus instead (producer/hostile.py: one record "
                      "of each of ~100 kinds the job must quarantine or survive, then valid "
                      "events with hostile ids), once")
    shop.add_argument("--start", default=DEFAULT_START, metavar="ISO|now",
                      help="simulated time of the first event (default: %(default)s)")
    shop.add_argument("--mean-gap-ms", type=_non_negative_float, default=100.0,
                      help="mean simulated time between events (default: %(default)s)")
    shop.add_argument("--no-price", action="store_true", help="leave out the price field")
    shop.add_argument("--truth-out", type=Path, metavar="FILE.json",
                      help="write the planted truth (user->segment, product->category, "
                      "segment->preferred categories) to this file")



def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    replay = parser.add_argument_group("replay a CSV instead (--replay)")
    replay.add_argument("--replay", type=Path, metavar="FILE.csv",
                        help="send the rows of this CSV (with a header) in timestamp order")
    replay.add_argument("--user-col", default="user_id", help="(default: %(default)s)")
    replay.add_argument("--product-col", default="product_id", help="(default: %(default)s)")
    replay.add_argument("--timestamp-col", default="timestamp", help="(default: %(default)s)")
    amount_cols = replay.add_mutually_exclusive_group()
    amount_cols.add_argument("--quantity-col", help="column used as quantity (rounded)")
    amount_cols.add_argument("--rating-col",
                             help="column of ratings, sent as the event's `rating` exactly "
                             "(explicit ALS fits it), quantity 1; without either column, "
                             "quantity is 1")
    replay.add_argument("--price-col", help="column of unit prices (optional)")
    replay.add_argument("--timestamp-format", metavar="FMT",
                        help="epoch_s, epoch_ms, or a strftime pattern like '%%d/%%m/%%Y %%H:%%M'"
                        " (default: detected; numbers below 1e11 are epoch seconds)")
    replay.add_argument("--speed", type=_non_negative_float, default=0.0,
                        help="time compression: 3600 = one hour of data per second; "
                        "0 = as fast as possible (default)")
    rebase = replay.add_mutually_exclusive_group()
    rebase.add_argument("--rebase-start", metavar="ISO|now",
                        help="shift all replayed timestamps so the first is at this instant "
                        "(with --speed 1 a live replay from now)")
    rebase.add_argument("--rebase-end", metavar="ISO|now",
                        help="shift all replayed timestamps so the last is at this instant: "
                        "with 'now' a file of any age replays with every event in the past")
    replay.add_argument("--job-config", type=Path, dest="config", help=argparse.SUPPRESS)
    replay.add_argument("--allow-quarantined", action="store_true",
                        help="send a replay even if most of its events would be quarantined "
                        "for their timestamps (the default refuses, naming the fix)")



def _output_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output and tuning")
    out.add_argument("--epoch-ms", action="store_true",
                     help="write timestamps as epoch milliseconds instead of ISO-8601 strings")
    out.add_argument("--compression", choices=COMPRESSION_TYPES,
                     default=ProducerSettings.compression_type,
                     help="Kafka batch compression (default: %(default)s = lz4 if the lz4 "
                     "package is installed, else none if crc32c is, else gzip; lz4, zstd and "
                     "snappy need their Python packages)")
    out.add_argument("--linger-ms", type=int, default=ProducerSettings.linger_ms,
                     help="(default: %(default)s)")
    out.add_argument("--batch-size", type=_positive_int, default=ProducerSettings.batch_size,
                     metavar="BYTES", help="(default: %(default)s)")
    out.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                     help="producer processes; kafka-python uses about one core per process, "
                     "so 2 can send up to twice as fast; a user's events always go through "
                     "the same one, in order (default: %(default)s)")
    out.add_argument("--flush-timeout", type=_non_negative_float, default=60.0, metavar="SECONDS",
                     help="how long to wait for acknowledgements at the end (default: %(default)s)")
    out.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                     help="bar on a terminal, log lines otherwise (default: %(default)s)")
    out.add_argument("--log-level", default="INFO",
                     choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="(default: %(default)s)")


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations argparse cannot express; exits with status 2 naming the flag."""
    if args.hostile and (args.replay is not None or args.bad_ratio > 0):
        parser.error("--hostile sends its own corpus: not with --replay or --bad-ratio")
    if args.replay is not None:
        if args.bad_ratio > 0:
            parser.error("--bad-ratio only applies to the generator, not to --replay")
        if args.speed > 0 and args.rate > 0:
            parser.error("give --speed (replay pace) or --rate, not both")
    elif args.speed > 0:
        parser.error("--speed only applies to --replay (use --rate for the generator)")
    for flag in ("start", "rebase_start", "rebase_end"):
        value = getattr(args, flag)
        if value is not None:
            try:
                parse_instant_ms(value)
            except ValueError:
                parser.error(f"--{flag.replace('_', '-')}: not an ISO-8601 instant or 'now': "
                             f"{value!r}")


def _generator_source(args: argparse.Namespace) -> tuple[Iterator[RecordChunk], int | None]:
    config = GeneratorConfig(
        users=args.users,
        products=args.products,
        segments=args.segments,
        categories=args.categories,
        affinity=args.affinity,
        seed=args.seed,
        start=args.start,
        mean_gap_ms=args.mean_gap_ms,
        timestamp_format="epoch_ms" if args.epoch_ms else "iso",
        with_price=not args.no_price,
        id_prefix=args.id_prefix,
        bad_ratio=args.bad_ratio,
        max_message_bytes=args.stream.max_message_bytes,
    )
    generator = SalesGenerator(config)
    _warn_if_clock_runs_ahead(args)
    if args.truth_out is not None:
        args.truth_out.write_text(json.dumps(generator.truth.to_dict(), indent=1))
        log.info("planted truth written to %s", args.truth_out)
    log.info("generator: %d users in %d segments, %d products in %d categories, seed %d",
             config.users, config.segments, config.products, config.n_categories, config.seed)
    return generator.record_chunks(args.events), args.events


def _warn_if_clock_runs_ahead(args: argparse.Namespace) -> None:
    """The job quarantines timestamps more than an hour ahead of the record's Kafka time."""
    expected = args.events
    if expected is None and args.rate > 0 and args.duration is not None:
        expected = int(args.rate * args.duration)
    if expected is None:
        return
    last_ms = parse_instant_ms(args.start) + expected * args.mean_gap_ms
    ahead_h = (last_ms - now_ms()) / 3_600_000
    if ahead_h > 1:
        log.warning("the simulated clock will reach %.1f h past the wall clock (start %s, %d "
                    "events, mean gap %g ms): the job quarantines events more than 1 h in the "
                    "future; use an earlier --start or a smaller --mean-gap-ms",
                    ahead_h, args.start, expected, args.mean_gap_ms)


def _replay_source(args: argparse.Namespace) -> tuple[Iterator[RecordChunk], int | None]:
    mapping = ColumnMapping(
        user=args.user_col,
        product=args.product_col,
        timestamp=args.timestamp_col,
        quantity=args.quantity_col,
        rating=args.rating_col,
        price=args.price_col,
    )
    table = read_replay(args.replay, mapping, timestamp_format=args.timestamp_format)
    total = len(table) if args.events is None else min(args.events, len(table))
    log.info("replay %s: %d rows in time order (%d skipped), speed %s", args.replay, len(table),
             table.skipped, args.speed or "as fast as possible")
    start = parse_instant_ms(args.rebase_start) if args.rebase_start else None
    end = parse_instant_ms(args.rebase_end) if args.rebase_end else None
    shift = table.shift_ms(rebase_start_ms=start, rebase_end_ms=end, limit=args.events)
    stream = args.stream
    forecast = forecast_quarantine(
        table, shift_ms=shift, speed=args.speed, start_ms=now_ms(),
        min_timestamp_ms=parse_instant_ms(stream.min_timestamp),
        max_future_ms=stream.max_future_seconds * 1000, limit=args.events,
    )
    _check_replay_times(forecast, stream.min_timestamp, stream.max_future_seconds,
                        allow=args.allow_quarantined)
    chunks = table.record_chunks(
        epoch_ms=args.epoch_ms, rebase_start_ms=start, rebase_end_ms=end, speed=args.speed,
        limit=args.events,
    )
    return chunks, total


def _check_replay_times(
    forecast: QuarantineForecast, min_timestamp: str, max_future_seconds: int, *, allow: bool
) -> None:
    """Warn when replayed events would be quarantined for their timestamps; refuse (naming
    the flag that fixes it) when most would be, unless `allow`."""
    if not forecast.quarantined:
        return
    span_ms = forecast.last_ms - forecast.first_ms
    room_ms = now_ms() - parse_instant_ms(min_timestamp)
    if span_ms <= room_ms:
        fix = ("replay with --rebase-end now: the last event at the present, every gap kept, "
               "none in the future (any --speed)")
    else:
        fix = (f"the replay spans {span_ms / MS_PER_DAY / 365.25:.1f} years, more than lies "
               f"between the job's stream.min_timestamp {min_timestamp} and now: lower it in "
               "the job's settings (and pass them as --job-config), or replay the latest "
               "part only, with --rebase-end now")
    message = (
        f"{forecast.quarantined:,} of {forecast.rows:,} replayed events would be quarantined "
        f"by the job: {forecast.too_old:,} before stream.min_timestamp {min_timestamp}, "
        f"{forecast.in_future:,} more than stream.max_future_seconds ({max_future_seconds} s) "
        f"ahead of the time they are sent (timestamps {format_timestamp(forecast.first_ms)} "
        f"to {format_timestamp(forecast.last_ms)} as replayed); {fix}"
    )
    if 2 * forecast.quarantined > forecast.rows and not allow:
        raise ProducerConfigError(message + "; or --allow-quarantined to send them anyway")
    log.warning("%s", message)


def _hostile_source(max_message_bytes: int) -> tuple[Iterator[RecordChunk], int]:
    """The fuzz corpus as one chunk (its record without a value left out: it needs a key)."""
    records = [r for r in hostile_records(now_ms=now_ms(), max_message_bytes=max_message_bytes)
               if r.value is not None]
    log.info("hostile corpus: %d records of %d kinds, %d of them valid", len(records),
             len({r.kind for r in records}), sum(r.expected_reason is None for r in records))
    chunk = RecordChunk([None] * len(records), [r.value for r in records],
                        bad={i: r.expected_reason for i, r in enumerate(records)
                             if r.expected_reason})
    return iter([chunk]), len(records)


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """First SIGINT/SIGTERM: stop sending and flush; a second SIGINT aborts at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("%s received: stopping, flushing records in flight (Ctrl-C again to abort)",
                    signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def run(args: argparse.Namespace) -> int:
    """Send what the arguments ask for; returns the exit code."""
    if args.replay:
        source, total = _replay_source(args)
    elif args.hostile:
        source, total = _hostile_source(args.stream.max_message_bytes)
    else:
        source, total = _generator_source(args)
    settings = ProducerSettings(
        compression_type=args.compression, linger_ms=args.linger_ms, batch_size=args.batch_size
    )
    transport: KafkaTransport | WorkerPoolTransport | StdoutTransport
    if args.dry_run:
        transport = StdoutTransport()
    else:
        if args.create_topic:
            ensure_topic(args.bootstrap_servers, args.topic, args.partitions,
                         args.replication_factor, timeout_s=args.connect_timeout)
        if args.workers > 1:
            transport = WorkerPoolTransport(args.bootstrap_servers, args.topic, settings,
                                            workers=args.workers,
                                            connect_timeout_s=args.connect_timeout)
        else:
            transport = KafkaTransport(args.bootstrap_servers, args.topic, settings,
                                       connect_timeout_s=args.connect_timeout)
        log.info("sending to %s on %s (acks=all, idempotent, %s, linger %d ms, batch %d B, "
                 "%d process(es))", args.topic, args.bootstrap_servers,
                 settings.effective_compression, settings.linger_ms, settings.batch_size,
                 args.workers)
    stop = threading.Event()
    restore = _stop_on_signals(stop)
    progress = Progress(total, "off" if args.dry_run else args.progress)
    outcome = "aborted"
    transport.stats.started = time.monotonic()
    try:
        outcome = pump(source, transport, rate=args.rate, duration_s=args.duration, stop=stop,
                       on_progress=progress.update, max_unconfirmed=settings.max_unconfirmed)
    finally:
        try:
            if outcome != "done":
                log.info("%s: flushing %d records in flight", outcome, transport.stats.in_flight)
            transport.close(args.flush_timeout)
        finally:
            progress.close(transport.stats)
            restore()
            log.info("%s: %s", outcome, transport.stats.summary())
    stats = transport.stats
    if stats.failed or stats.in_flight:
        log.error("%d records failed and %d stayed unconfirmed", stats.failed, stats.in_flight)
        return 1
    return 0


def with_settings(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with the defaults the settings file gives (--config over conf/defaults.yaml):
    the broker, topic and connect timeout; `args.stream` holds its stream.* limits."""
    cfg = load_config(args.config, path_given_as="--config")
    args.bootstrap_servers = args.bootstrap_servers or cfg.kafka.bootstrap_servers
    args.topic = args.topic or cfg.kafka.topic
    if args.connect_timeout is None:
        args.connect_timeout = cfg.kafka.connect_timeout_seconds
    args.stream = cfg.stream
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m producer`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":
        # kafka-python logs every reconnect attempt; our own errors say what failed.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        return run(with_settings(args))
    except (ProducerConfigError, InvalidConfigError) as exc:
        log.error("%s", exc)
        return 2
    except (ReplayFormatError, RecsysError, KafkaError, OSError) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("aborted")
        return 130
