"""Command line of the local Kafka (scripts/kafka): start | stop | status.

    python -m infra.kafka_cli start [--home var/kafka] [--brokers 1|3] [--port 9092]
    python -m infra.kafka_cli stop [--home var/kafka]
    python -m infra.kafka_cli status [--home var/kafka] [--json]   # exit 0 running, 3 not

A home keeps the ports and node count of its first start; later commands find them there.
"""

from __future__ import annotations

import sys

from infra.cli import DaemonCli, StartOption
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
build_parser, format_status, main = CLI.build_parser, CLI.format_status, CLI.main

if __name__ == "__main__":
    sys.exit(main())
