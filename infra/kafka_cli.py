"""Command line of the local Kafka (scripts/kafka): start | stop | status.

    python -m infra.kafka_cli start [--home var/kafka] [--brokers 1|3] [--port 9092]
    python -m infra.kafka_cli stop [--home var/kafka]
    python -m infra.kafka_cli status [--home var/kafka] [--json]   # exit 0 running, 3 not
    python -m infra.kafka_cli run [--home var/kafka] [--port 9092]  # one broker in the foreground

A home keeps the ports and node count of its first start; later commands find them there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from infra.cli import DaemonCli, StartOption, configure_logging, resolve_home, run_command
from infra.kafka_local import LocalKafka
from infra.ports import parse_port

CLI = DaemonCli(
    LocalKafka, "kafka", __doc__,
    helps=("start the broker(s), or reuse them if running", "stop every broker of the home"),
    start_options=(
        StartOption("--brokers", "brokers", "number of nodes", 1, saved_key="brokers",
                    choices=(1, 3)),
        StartOption("--port", "base_port", "client port of node 1; node N uses port+2(N-1), "
                    "its controller the next one", 9092, type=parse_port),
    ),
    headline=lambda status: f"bootstrap {status['bootstrap_servers']}",
    describe=lambda node: (f"node {node['node_id']}: pid {node['pid'] or '-'}, client port "
                           f"{node['client_port']}, controller port {node['controller_port']}"),
)
build_parser, format_status = CLI.build_parser, CLI.format_status
DEFAULT_PORT = 9092


def run_in_foreground(argv: Sequence[str]) -> int:
    """`run`: become one broker in the foreground, logging to the console (a container's main
    process); the port as given, else as saved in the home, else 9092."""
    parser = argparse.ArgumentParser(prog="scripts/kafka run", description=run_in_foreground
                                     .__doc__.splitlines()[0])
    parser.add_argument("--home", help="state folder (default: var/kafka in the repo)")
    parser.add_argument("--port", type=parse_port, default=None,
                        help=f"client port; the controller uses the next one (default: saved, "
                             f"else {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    configure_logging()
    home = resolve_home(args.home, "var/kafka")

    def become_the_broker() -> int:
        fresh = not (home / LocalKafka.state_name).exists()
        port = args.port if args.port is not None else (DEFAULT_PORT if fresh else None)
        broker = LocalKafka(home, 1, port).foreground_command()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(broker[0], broker)
        return 0  # not reached

    return run_command(become_the_broker)


def main(argv: Sequence[str] | None = None) -> int:
    """start | stop | status (the shared CLI), or run (this service's own)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        return run_in_foreground(args[1:])
    return CLI.main(args)

if __name__ == "__main__":
    sys.exit(main())
