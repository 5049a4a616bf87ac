"""Command line of the local Spark standalone cluster (scripts/spark-cluster).

    python -m infra.spark_cli start [--home var/spark-cluster] [--workers 2] [--cores 1]
    python -m infra.spark_cli stop [--home var/spark-cluster]
    python -m infra.spark_cli status [--home var/spark-cluster] [--json]   # exit 0 / 3

A stopped home may start again with other sizes; a running one keeps them.
"""

from __future__ import annotations

import sys

from infra.cli import DaemonCli, StartOption
from infra.ports import parse_port
from infra.spark_cluster import LocalSparkCluster

CLI = DaemonCli(
    LocalSparkCluster, "spark-cluster", __doc__,
    helps=("start the master and workers, or reuse them if running",
           "stop the workers (and their executors) and the master"),
    start_options=(
        StartOption("--workers", "workers", "number of workers", 2, saved_key="workers"),
        StartOption("--cores", "cores_per_worker", "cores per worker", 1,
                    saved_key="cores_per_worker"),
        StartOption("--memory", "memory_per_worker", "memory per worker, e.g. 1g", "1g",
                    saved_key="memory_per_worker", type=str),
        StartOption("--port", "master_port", "master port", 7077, type=parse_port),
        StartOption("--webui-port", "webui_port", "master web UI port", 8080, type=parse_port),
    ),
    headline=lambda status: (f"{status['master_url']}, web UI {status['webui_url']}, "
                             f"{status['alive_workers']} worker(s) ALIVE"),
    describe=lambda daemon: (f"{daemon['name']}: pid {daemon['pid'] or '-'}, web UI port "
                             f"{daemon['webui_port']}"),
)
build_parser, format_status, main = CLI.build_parser, CLI.format_status, CLI.main

if __name__ == "__main__":
    sys.exit(main())
