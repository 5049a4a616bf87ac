"""A real HDFS (one NameNode, N DataNodes, WebHDFS on) on loopback, from Hadoop's minicluster.

Used by the tests (the `hdfs` session fixture) and by `scripts/hdfs` for local runs: the job's
`paths.state` and `paths.results` can then be `hdfs://127.0.0.1:PORT/...`. It is Hadoop's own
`MiniDFSCluster` (jvm/hdfs/, built by scripts/setup into .deps/hdfs/) in one JVM, at the Hadoop
version of the client jars pyspark ships. The shared shape (home, pid file, start-or-reuse,
stop, status) is infra/daemon.py's; what is HDFS's own: one process, which formats its storage
on the first start only and writes a `ready` file once it serves. Everything lives under one
home folder::

    home/
      hdfs.json        ports and DataNode count: found again by later starts
      data/            the NameNode's and DataNodes' storage (formatted on the first start only)
      hdfs.out         the JVM's console log (Hadoop's warnings and errors)
      hdfs.pid
      ready            written by the JVM once it serves: the hdfs:// URI

Command line: scripts/hdfs (infra/hdfs_cli.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.daemon import DEPS_DIR, Daemon, DaemonGroup, Runtime, require_jars
from infra.ports import HOST, free_ports, port_answers

log = logging.getLogger(__name__)

MAIN_CLASS = "recsys.hdfs.MiniHdfs"
MAIN_JAR = "recsys-hdfs.jar"
DEFAULT_HEAP = "512m"
# Hadoop's INFO lines run to thousands per minute; warnings and errors say what went wrong.
LOG_LEVEL = "warn"


@dataclass(frozen=True)
class HdfsPorts:
    """The NameNode's RPC port (hdfs://) and HTTP port (web UI, WebHDFS)."""

    namenode: int
    http: int


def plan_ports(namenode: int | None, http: int | None) -> HdfsPorts:
    """The ports given, free ones where none was."""
    picked = iter(free_ports(2))
    first, second = next(picked), next(picked)
    return HdfsPorts(namenode if namenode is not None else first,
                     http if http is not None else second)


def hdfs_classpath(deps_dir: Path = DEPS_DIR) -> list[Path]:
    """The minicluster's jars (with the project's MiniHdfs main) from .deps/hdfs/."""
    return require_jars(deps_dir / "hdfs", ("recsys-hdfs", "hadoop-client-minicluster-"),
                        "HDFS minicluster")


class LocalHdfs(DaemonGroup):
    """A single-JVM HDFS on 127.0.0.1 living under `home`."""

    service = "HDFS"
    state_name = "hdfs.json"
    main_classes = (MAIN_CLASS,)
    ready_what = "HDFS to serve"

    def __init__(
        self,
        home: Path,
        namenode_port: int | None = None,
        http_port: int | None = None,
        datanodes: int = 1,
        *,
        java: str | os.PathLike[str] | None = None,
        deps_dir: Path | None = None,
        heap: str = DEFAULT_HEAP,
    ) -> None:
        super().__init__(home, java)
        self.datanodes = datanodes
        self.deps_dir = deps_dir or DEPS_DIR
        self.heap = heap
        self.data_dir = self.home / "data"  # MiniDFSCluster's base folder
        self._ready_file = self.home / "ready"
        self.ports = self._adopt_ports(namenode_port, http_port)
        # The filesystem's root, for paths.state / paths.results.
        self.uri = f"hdfs://{HOST}:{self.ports.namenode}"
        # The NameNode's web UI; WebHDFS is under /webhdfs/v1/.
        self.webhdfs_url = f"http://{HOST}:{self.ports.http}"

    # ---- layout ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.uri

    def daemons(self) -> list[Daemon]:
        return [self._daemon(self.ports)]

    def _daemon(self, ports: HdfsPorts) -> Daemon:
        return Daemon(
            name="hdfs", label="HDFS", folder=self.home, pid_file=self.home / "hdfs.pid",
            console=self.home / "hdfs.out", markers=(MAIN_CLASS, str(self.data_dir)),
            ports=((ports.namenode, "HDFS NameNode"), (ports.http, "HDFS web UI")),
        )

    def _adopt_ports(self, namenode: int | None, http: int | None) -> HdfsPorts:
        """Saved ports where none were given; refuse other ones while the cluster runs."""
        state = self.saved_state()
        if state is None:
            return plan_ports(namenode, http)
        saved = HdfsPorts(state["namenode_port"], state["http_port"])
        wanted = HdfsPorts(namenode or saved.namenode, http or saved.http)
        if (wanted, self.datanodes) != (saved, state["datanodes"]):
            self.refuse_if_running(
                [self._daemon(saved)],
                f"on port {saved.namenode} (HTTP {saved.http}) with {state['datanodes']} "
                "DataNode(s)",
            )
        return wanted

    def state(self) -> dict[str, Any]:
        return {"uri": self.uri, "webhdfs_url": self.webhdfs_url,
                "namenode_port": self.ports.namenode, "http_port": self.ports.http,
                "datanodes": self.datanodes}

    # ---- start and stop -------------------------------------------------------------------

    def runtime(self, java: Path) -> Runtime:
        return Runtime(java, os.pathsep.join(str(j) for j in hdfs_classpath(self.deps_dir)))

    def prepare(self, missing: list[Daemon], runtime: Runtime) -> None:
        """No `ready` file of an earlier run may count as this one's."""
        self._ready_file.unlink(missing_ok=True)

    def command(self, daemon: Daemon, runtime: Runtime) -> list[str]:
        return [
            str(runtime.java), f"-Xmx{self.heap}", "-Djava.awt.headless=true",
            f"-Dorg.slf4j.simpleLogger.defaultLogLevel={LOG_LEVEL}",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp", runtime.classpath, MAIN_CLASS,
            str(self.data_dir), str(self.ports.namenode), str(self.ports.http),
            str(self.datanodes), str(self._ready_file),
        ]

    def ready(self) -> bool:
        """The JVM wrote its `ready` file and both ports answer."""
        return (self._ready_file.exists() and port_answers(self.ports.namenode)
                and port_answers(self.ports.http))

    def after_stop(self) -> None:
        self._ready_file.unlink(missing_ok=True)

    # ---- status ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return self.state()

    def status(self) -> dict[str, Any]:
        """pid, ports, URIs, whether it answers: one process, so one flat mapping."""
        status = super().status()
        (process,) = status.pop(self.status_key)
        return {**status, **process}
