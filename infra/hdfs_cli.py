"""Command line of the local HDFS (scripts/hdfs): start | stop | status.

    python -m infra.hdfs_cli start [--home var/hdfs] [--port 9000] [--http-port 9870]
    python -m infra.hdfs_cli stop [--home var/hdfs]
    python -m infra.hdfs_cli status [--home var/hdfs] [--json]   # exit 0 running, 3 not

Then e.g. `--set paths.state=hdfs://127.0.0.1:9000/recsys/state` for the job.
"""

from __future__ import annotations

import sys

from infra.cli import DaemonCli, StartOption
from infra.hdfs_local import LocalHdfs
from infra.ports import parse_port

CLI = DaemonCli(
    LocalHdfs, "hdfs", __doc__,
    helps=("start the NameNode and DataNode(s), or reuse them if running",
           "stop the cluster (its data stays in the home)"),
    start_options=(
        StartOption("--port", "namenode_port", "NameNode RPC port", 9000, type=parse_port),
        StartOption("--http-port", "http_port", "NameNode web UI / WebHDFS port", 9870,
                    type=parse_port),
        StartOption("--datanodes", "datanodes", "number of DataNodes", 1, saved_key="datanodes"),
    ),
    headline=lambda status: (f"{status['uri']}, WebHDFS {status['webhdfs_url']}/webhdfs/v1/, "
                             f"{status['datanodes']} DataNode(s)"),
    describe=lambda status: f"pid {status['pid'] or '-'}",
)
build_parser, format_status, main = CLI.build_parser, CLI.format_status, CLI.main

if __name__ == "__main__":
    sys.exit(main())
