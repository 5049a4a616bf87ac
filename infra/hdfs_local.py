"""A real HDFS (one NameNode, N DataNodes, WebHDFS on) on loopback, from Hadoop's minicluster.

Used by the tests (the `hdfs` session fixture) and by `scripts/hdfs` for local runs: the job's
`paths.state` and `paths.results` can then be `hdfs://127.0.0.1:PORT/...`. It is Hadoop's own
`MiniDFSCluster` (jvm/hdfs/, built by scripts/setup into .deps/hdfs/) in one JVM, at the Hadoop
version of the client jars pyspark ships. Everything lives under one home folder::

    home/
      hdfs.json        ports and DataNode count: found again by later starts
      data/            the NameNode's and DataNodes' storage (formatted on the first start only)
      hdfs.out         the JVM's console log (Hadoop's warnings and errors)
      hdfs.pid
      ready            written by the JVM once it serves: the hdfs:// URI

Command line: `python -m infra.hdfs_local {start,stop,status}` (see main()).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.cli import EXIT_NOT_RUNNING, configure_logging, resolve_home, run_command
from infra.errors import (
    ConfigMismatchError,
    MissingJarsError,
    ServiceExitedError,
    StartTimeoutError,
)
from infra.java import ensure_java
from infra.ports import HOST, ensure_ports_free, free_ports, parse_port, port_answers
from infra.processes import (
    error_summary,
    file_size,
    home_lock,
    load_json,
    process_matches,
    processes_mentioning,
    read_pid,
    read_since,
    save_json,
    spawn,
    terminate,
)
from infra.wait import wait_until

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPS_DIR = Path(os.environ.get("RECSYS_DEPS_DIR", REPO_ROOT / ".deps"))
MAIN_CLASS = "recsys.hdfs.MiniHdfs"
MAIN_JAR = "recsys-hdfs.jar"
DEFAULT_HOME = "var/hdfs"
DEFAULT_NAMENODE_PORT = 9000  # Hadoop's usual fs.defaultFS port
DEFAULT_HTTP_PORT = 9870  # Hadoop 3's NameNode web UI and WebHDFS port
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
    folder = deps_dir / "hdfs"
    jars = sorted(folder.glob("*.jar"))
    names = {j.name for j in jars}
    if MAIN_JAR not in names or not any(n.startswith("hadoop-client-minicluster-") for n in names):
        raise MissingJarsError(
            f"the HDFS minicluster jars are not in {folder}; run scripts/setup "
            "(it builds jvm/hdfs/ with Maven)"
        )
    return jars


class LocalHdfs:
    """A single-JVM HDFS on 127.0.0.1 living under `home`."""

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
        self.home = Path(home).absolute()
        self.datanodes = datanodes
        self.java = java
        self.deps_dir = deps_dir or DEPS_DIR
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        self.ports = self._adopt_ports(namenode_port, http_port)

    # ---- layout ---------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        """hdfs.json: ports and DataNode count of this home."""
        return self.home / "hdfs.json"

    @property
    def data_dir(self) -> Path:
        """The cluster's storage (MiniDFSCluster's base folder)."""
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        """The JVM's console log."""
        return self.home / "hdfs.out"

    @property
    def _pid_file(self) -> Path:
        return self.home / "hdfs.pid"

    @property
    def _ready_file(self) -> Path:
        return self.home / "ready"

    @property
    def uri(self) -> str:
        """hdfs://127.0.0.1:PORT: the filesystem's root, for paths.state / paths.results."""
        return f"hdfs://{HOST}:{self.ports.namenode}"

    @property
    def webhdfs_url(self) -> str:
        """http://127.0.0.1:PORT: the NameNode's web UI; WebHDFS is under /webhdfs/v1/."""
        return f"http://{HOST}:{self.ports.http}"

    def _adopt_ports(self, namenode: int | None, http: int | None) -> HdfsPorts:
        """Saved ports where none were given; refuse other ones while the cluster runs."""
        state = load_json(self.state_file)
        if state is None:
            return plan_ports(namenode, http)
        saved = HdfsPorts(state["namenode_port"], state["http_port"])
        wanted = HdfsPorts(namenode or saved.namenode, http or saved.http)
        if (wanted, self.datanodes) != (saved, state["datanodes"]) and self.is_running():
            raise ConfigMismatchError(
                f"an HDFS runs in {self.home} on port {saved.namenode} (HTTP {saved.http}) with "
                f"{state['datanodes']} DataNode(s); stop it first or use another home"
            )
        return wanted

    def _save_state(self) -> None:
        save_json(self.state_file, {"uri": self.uri, "webhdfs_url": self.webhdfs_url,
                                    "namenode_port": self.ports.namenode,
                                    "http_port": self.ports.http, "datanodes": self.datanodes})

    # ---- processes ------------------------------------------------------------------------

    def _markers(self) -> list[str]:
        return [MAIN_CLASS, str(self.data_dir)]

    def pid(self) -> int | None:
        """The pid of this home's live HDFS JVM, or None."""
        pid = read_pid(self._pid_file)
        return pid if process_matches(pid, self._markers()) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def _command(self, java: Path) -> list[str]:
        classpath = os.pathsep.join(str(j) for j in hdfs_classpath(self.deps_dir))
        return [
            str(java), f"-Xmx{self.heap}", "-Djava.awt.headless=true",
            f"-Dorg.slf4j.simpleLogger.defaultLogLevel={LOG_LEVEL}",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp", classpath, MAIN_CLASS,
            str(self.data_dir), str(self.ports.namenode), str(self.ports.http),
            str(self.datanodes), str(self._ready_file),
        ]

    # ---- start / stop ---------------------------------------------------------------------

    def start(self, timeout: float = 120) -> str:
        """Start the cluster, or reuse the one running from this home; wait until it serves.

        Returns the hdfs:// URI of its root.
        """
        started = time.monotonic()
        with home_lock(self.home):
            if self.is_running():
                log.info("HDFS already running in %s; reusing it", self.home)
            else:
                java = ensure_java(self.java)
                command = self._command(java)
                ensure_ports_free(
                    [(self.ports.namenode, "HDFS NameNode"), (self.ports.http, "HDFS web UI")],
                    hint="stop that process, or start HDFS with other ports / a fresh home",
                )
                self._save_state()
                self._ready_file.unlink(missing_ok=True)
                log.info("starting HDFS on %s (WebHDFS %s)", self.uri, self.webhdfs_url)
                self._log_start = file_size(self.log_file)
                self._proc = spawn(command, log_file=self.log_file, pid_file=self._pid_file,
                                   cwd=self.home)
            try:
                wait_until(self._ready, max(timeout - (time.monotonic() - started), 1.0),
                           "HDFS to serve", 0.25)
            except TimeoutError as exc:
                raise StartTimeoutError(
                    f"HDFS in {self.home} was not ready within {timeout:.0f} s; "
                    f"see {self.log_file}"
                ) from exc
        log.info("HDFS ready on %s in %.1f s", self.uri, time.monotonic() - started)
        return self.uri

    def _ready(self) -> bool:
        if self._proc is not None and (code := self._proc.poll()) is not None:
            self._proc = None
            self._pid_file.unlink(missing_ok=True)
            text = read_since(self.log_file, self._log_start)
            last = "\n".join(text.splitlines()[-15:])
            raise ServiceExitedError(
                f"HDFS exited during start (exit code {code}): {error_summary(text)}; "
                f"see {self.log_file}\nLast lines of {self.log_file}:\n{last}"
            )
        return (self._ready_file.exists() and port_answers(self.ports.namenode)
                and port_answers(self.ports.http))

    def stop(self, timeout: float = 30) -> None:
        """Stop the cluster (SIGTERM, SIGKILL after `timeout`); safe to call when stopped."""
        if not self.state_file.exists():
            return
        with home_lock(self.home):
            pids = [p for p in [self.pid()] if p]
            pids += [p.pid for p in processes_mentioning(str(self.data_dir))
                     if p.pid not in pids and process_matches(p.pid, self._markers())]
            if pids:
                log.info("stopping HDFS in %s (pids %s)", self.home, pids)
                terminate(pids, timeout)
            self._pid_file.unlink(missing_ok=True)
            self._ready_file.unlink(missing_ok=True)
            if self._proc is not None and self._proc.poll() is not None:
                self._proc = None

    def status(self) -> dict[str, Any]:
        """pid, ports, URIs, whether it answers."""
        pid = self.pid()
        return {
            "home": str(self.home),
            "running": pid is not None,
            "pid": pid,
            "uri": self.uri,
            "webhdfs_url": self.webhdfs_url,
            "namenode_port": self.ports.namenode,
            "http_port": self.ports.http,
            "datanodes": self.datanodes,
            "answering": pid is not None and port_answers(self.ports.namenode),
            "log": str(self.log_file),
        }


# ---- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `python -m infra.hdfs_local`."""
    parser = argparse.ArgumentParser(prog="scripts/hdfs",
                                     description="A local HDFS (NameNode + DataNode) on loopback.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("start", "start the NameNode and DataNode(s), or reuse them if running"),
        ("stop", "stop the cluster (its data stays in the home)"),
        ("status", "show pid, ports and URIs; exit 0 if running, 3 if not"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--home", help=f"state folder (default: {DEFAULT_HOME} in the repo)")
        if name == "start":
            cmd.add_argument("--port", type=parse_port, default=None,
                             help=f"NameNode RPC port (default: saved, else "
                                  f"{DEFAULT_NAMENODE_PORT})")
            cmd.add_argument("--http-port", type=parse_port, default=None,
                             help=f"NameNode web UI / WebHDFS port (default: saved, else "
                                  f"{DEFAULT_HTTP_PORT})")
            cmd.add_argument("--datanodes", type=int, default=None,
                             help="number of DataNodes (default: saved, else 1)")
            cmd.add_argument("--timeout", type=float, default=120, help="seconds to wait")
        if name == "stop":
            cmd.add_argument("--timeout", type=float, default=30, help="seconds before SIGKILL")
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print JSON")
    return parser


def open_home(home: Path, args: argparse.Namespace | None = None) -> LocalHdfs:
    """A LocalHdfs on `home`: saved settings, CLI options where given, else the defaults."""
    saved = load_json(home / "hdfs.json") or {}
    given = vars(args) if args is not None else {}
    return LocalHdfs(
        home,
        namenode_port=given.get("port") or (None if saved else DEFAULT_NAMENODE_PORT),
        http_port=given.get("http_port") or (None if saved else DEFAULT_HTTP_PORT),
        datanodes=given.get("datanodes") or saved.get("datanodes", 1),
    )


def format_status(status: dict[str, Any]) -> str:
    """Human-readable status lines."""
    state = "running" if status["running"] else "not running"
    return (f"HDFS in {status['home']}: {state}; {status['uri']}, WebHDFS "
            f"{status['webhdfs_url']}/webhdfs/v1/, {status['datanodes']} DataNode(s)\n"
            f"  pid {status['pid'] or '-'}, log {status['log']}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m infra.hdfs_local`."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    home = resolve_home(args.home, DEFAULT_HOME)

    def command() -> int:
        if args.command == "start":
            open_home(home, args).start(timeout=args.timeout)
            return 0
        if not (home / "hdfs.json").exists():
            if args.command == "status":
                sys.stdout.write(f"no HDFS set up in {home}\n")
                return EXIT_NOT_RUNNING
            return 0
        hdfs = open_home(home)
        if args.command == "stop":
            hdfs.stop(timeout=args.timeout)
            return 0
        status = hdfs.status()
        sys.stdout.write(json.dumps(status, indent=2) + "\n" if args.json
                         else format_status(status))
        return 0 if status["running"] else EXIT_NOT_RUNNING

    return run_command(command)


if __name__ == "__main__":
    # Run the imported module's main, so log lines name infra.hdfs_local, not __main__.
    from infra.hdfs_local import main as module_main

    sys.exit(module_main())
