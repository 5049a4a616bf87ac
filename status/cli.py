"""``python -m status`` (scripts/status): the job's state on one screen, from the broker and the
published files. Works while the job runs and when it is stopped; a source that does not answer
(the broker, HDFS) is named in one line and the rest is shown."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from recsys_contract.config import add_settings_arguments, settings_from_args
from recsys_contract.errors import InvalidConfigError
from status.report import Snapshot, render
from status.sources import DEFAULT_WEBHDFS_PORT, Results, SourceError, topic_end_offsets

EXIT_CONFIG = 2
SHORTCUTS = {"--results": "paths.results", "--bootstrap-servers": "kafka.bootstrap_servers",
             "--topic": "kafka.topic"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="status", description="The streaming job's state: topic end offsets vs processed, "
        "lag, events until the next run, quarantine by reason, the last runs and verdicts.")
    # the job's own settings: its kafka.* and paths.results (a folder, or hdfs://...) are read
    add_settings_arguments(parser, "paths.results=hdfs://namenode:8020/recsys", SHORTCUTS)
    parser.add_argument("--runs", type=int, default=5, help="how many last runs to list (5)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds the broker has to answer (5)")
    parser.add_argument("--webhdfs-port", type=int, default=DEFAULT_WEBHDFS_PORT,
                        help="the NameNode's HTTP port, for hdfs:// results (9870)")
    return parser


def gather(results: Results, bootstrap_servers: str, topic: str, *, runs: int,
           timeout_seconds: float) -> Snapshot:
    """Read every source; one that fails leaves its reason in the snapshot."""
    values: dict = {}
    try:
        values["end_offsets"] = topic_end_offsets(bootstrap_servers, topic, timeout_seconds)
    except SourceError as exc:
        values["broker_error"] = str(exc)
    try:
        values["status"] = results.status()
    except SourceError as exc:
        values["status_error"] = str(exc)
    try:
        values["runs"] = results.last_runs(runs)
        values["latest"] = results.latest()
    except SourceError as exc:
        values["runs_error"] = str(exc)
    return Snapshot(results=results.name, topic=topic, bootstrap_servers=bootstrap_servers,
                    **values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = settings_from_args(args, SHORTCUTS)
    except InvalidConfigError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    snapshot = gather(Results(cfg.paths.results, args.webhdfs_port),
                      cfg.kafka.bootstrap_servers, cfg.kafka.topic, runs=args.runs,
                      timeout_seconds=args.timeout)
    sys.stdout.write(render(snapshot, time.time()))
    return 0
