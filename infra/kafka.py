"""Command line for the local Kafka: `python -m infra.kafka {start,stop,status}`.

    python -m infra.kafka start [--home var/kafka] [--brokers 1|3] [--port 9092]
    python -m infra.kafka stop [--home var/kafka]
    python -m infra.kafka status [--home var/kafka] [--json]   # exit 0 running, 3 not
    python -m infra.kafka run [--home var/kafka] [--port 9092]  # one broker in the foreground

A home keeps the ports and node count of its first start; later commands find them there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra.cli import EXIT_NOT_RUNNING, configure_logging, resolve_home, run_command
from infra.kafka_local import LocalKafka
from infra.ports import parse_port
from infra.processes import load_json

DEFAULT_HOME = "var/kafka"
DEFAULT_PORT = 9092


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the Kafka CLI."""
    parser = argparse.ArgumentParser(prog="scripts/kafka", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("start", "start the broker(s), or reuse them if running"),
        ("stop", "stop every broker of the home"),
        ("status", "show pids and ports; exit 0 if running, 3 if not"),
        ("run", "become one broker in the foreground, logging to the console (containers)"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--home", help=f"state folder (default: {DEFAULT_HOME} in the repo)")
        if name == "run":
            cmd.add_argument("--port", type=parse_port, default=None,
                             help=f"client port; the controller uses the next one (default: "
                                  f"saved, else {DEFAULT_PORT})")
        if name == "start":
            cmd.add_argument("--brokers", type=int, choices=(1, 3), default=None,
                             help="number of nodes (default: as saved in the home, else 1)")
            cmd.add_argument("--port", type=parse_port, default=None,
                             help=f"client port of node 1; node N uses port+2(N-1), its "
                                  f"controller the next one (default: saved, else "
                                  f"{DEFAULT_PORT})")
            cmd.add_argument("--timeout", type=float, default=120, help="seconds to wait")
        if name == "stop":
            cmd.add_argument("--timeout", type=float, default=30,
                             help="seconds before SIGKILL")
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print JSON")
    return parser


def open_home(home: Path, brokers: int | None = None, port: int | None = None) -> LocalKafka:
    """A LocalKafka on `home`, adopting the node count and ports saved there, if any."""
    saved = load_json(home / "cluster.json")
    if saved is not None:
        return LocalKafka(home, brokers=brokers or saved["brokers"], base_port=port)
    return LocalKafka(home, brokers=brokers or 1, base_port=port or DEFAULT_PORT)


def format_status(status: dict[str, Any]) -> str:
    """Human-readable status lines."""
    if not status["nodes"]:
        return f"no Kafka set up in {status['home']}\n"
    state = "running" if status["running"] else "not running"
    lines = [f"Kafka in {status['home']}: {state}; bootstrap {status['bootstrap_servers']}"]
    for node in status["nodes"]:
        pid = node["pid"] if node["alive"] else "-"
        lines.append(
            f"  node {node['node_id']}: pid {pid}, client port {node['client_port']}, "
            f"controller port {node['controller_port']}, log {node['log']}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m infra.kafka`."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    home = resolve_home(args.home, DEFAULT_HOME)

    def command() -> int:
        if args.command == "start":
            open_home(home, args.brokers, args.port).start(timeout=args.timeout)
            return 0
        if args.command == "run":
            broker = open_home(home, 1, args.port).foreground_command()
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(broker[0], broker)
        kafka = open_home(home)
        if args.command == "stop":
            kafka.stop(timeout=args.timeout)
            return 0
        status = kafka.status() if (home / "cluster.json").exists() else {
            "home": str(home), "running": False, "nodes": []}
        text = json.dumps(status, indent=2) + "\n" if args.json else format_status(status)
        sys.stdout.write(text)
        return 0 if status["running"] else EXIT_NOT_RUNNING

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
