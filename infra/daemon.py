"""The shape every local service shares (Kafka, the Spark cluster, HDFS): a home, its processes.

A service lives in one home folder: a state file of its ports and sizes, found again by later
starts and by the CLI, and per process a pid file and a console log. `DaemonGroup` owns what is
the same for all of them:

- start-or-reuse under a lock on the home: only the processes not alive are started, after
  checking java, the jars and that their ports are free; then it waits, with a deadline, until
  the service is ready. A process that dies meanwhile is named with the tail of its log;
- stop: SIGTERM to the processes (and their children), SIGKILL after a timeout, then a wait
  until their ports are free; processes of the home whose pid file was lost are found too;
- status: per process its pid, whether it is alive and answers on its port, its log.

A subclass says only what differs: its processes (`daemons`), what it saves, the runtime it
needs (jars, environment), the files to write before a start, each process's command line, and
when it is ready.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from infra.errors import (
    ConfigMismatchError,
    MissingJarsError,
    ServiceExitedError,
    StartTimeoutError,
)
from infra.java import ensure_java
from infra.ports import HOST, ensure_ports_free, port_answers, port_is_free
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
    tail,
    terminate,
)
from infra.wait import wait_until

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPS_DIR = Path(os.environ.get("RECSYS_DEPS_DIR", REPO_ROOT / ".deps"))  # scripts/setup's jars
PORT_RELEASE_TIMEOUT = 10.0  # seconds a stopped process's ports get to become free
LOG_TAIL_LINES = 15  # lines of a dead process's log shown in the error


def require_jars(folder: Path, prefixes: Sequence[str], what: str) -> list[Path]:
    """The jars in `folder`, sorted; MissingJarsError if one of `prefixes` has none."""
    jars = sorted(folder.glob("*.jar"))
    for prefix in prefixes:
        if not any(j.name.startswith(prefix) for j in jars):
            raise MissingJarsError(
                f"{what} jars not found in {folder} (no {prefix}*.jar); run scripts/setup"
            )
    return jars


@dataclass(frozen=True)
class Daemon:
    """One process of a service: how to find it again, where it logs, which ports it holds."""

    name: str  # unique in the home: "node-1", "master", "worker-2", "hdfs"
    label: str  # in messages: "Kafka node 1", "Spark worker-2", "HDFS"
    folder: Path  # its working folder
    pid_file: Path
    console: Path  # its stdout and stderr
    markers: tuple[str, ...]  # its command line holds all of them (a recycled pid does not)
    ports: tuple[tuple[int, str], ...]  # (port, what listens there); the first one answers
    log: Path | None = None  # its own log, where the console only gets JVM-level failures
    env: Mapping[str, str] = field(default_factory=dict)  # added to the service's environment
    info: Mapping[str, Any] = field(default_factory=dict)  # extra fields of its status

    @property
    def main_log(self) -> Path:
        """The log to read first when something goes wrong."""
        return self.log or self.console


@dataclass(frozen=True)
class Deadline:
    """When a start must be done by, and the timeout it was given (for the message)."""

    at: float  # time.monotonic() value
    total: float

    @classmethod
    def after(cls, timeout: float) -> Deadline:
        return cls(time.monotonic() + timeout, timeout)

    def remaining(self) -> float:
        """Seconds left, at least one: a late check still gets a last look."""
        return max(self.at - time.monotonic(), 1.0)


@dataclass(frozen=True)
class Runtime:
    """What the processes of one start run with: java, the classpath, the environment."""

    java: Path
    classpath: str = ""
    env: Mapping[str, str] | None = None  # None: this process's environment


class DaemonGroup(ABC):
    """The processes of one service living under `home` (see the module's docstring)."""

    service: ClassVar[str] = "service"  # in messages: "Kafka", "Spark cluster", "HDFS"
    state_name: ClassVar[str] = "cluster.json"
    main_classes: ClassVar[tuple[str, ...]] = ()  # what a process of this service runs
    ready_what: ClassVar[str] = "the service to be ready"
    status_key: ClassVar[str] = "processes"  # the key of the per-process list in status()
    port_hint: ClassVar[str] = "stop that process, or use other ports / a fresh home"

    def __init__(self, home: Path, java: str | os.PathLike[str] | None = None) -> None:
        self.home = Path(home).absolute()
        self.java = java
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # started by this object
        self._log_starts: dict[Path, int] = {}  # where this run's part of a log begins

    # ---- what a service says --------------------------------------------------------------

    @abstractmethod
    def daemons(self) -> list[Daemon]:
        """The processes of this home, in start order ([] before the layout is known)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """What the state file keeps: ports, sizes, addresses."""

    @property
    @abstractmethod
    def address(self) -> str:
        """What start() returns: where clients connect."""

    def runtime(self, java: Path) -> Runtime:
        """The classpath and environment of the processes (MissingJarsError if absent)."""
        return Runtime(java)

    def prepare(self, missing: list[Daemon], runtime: Runtime) -> None:
        """Write config files, format storage: whatever must exist before `missing` start."""
        return None  # a hook: nothing by default

    @abstractmethod
    def command(self, daemon: Daemon, runtime: Runtime) -> list[str]:
        """The command line of one process."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether the whole service serves (called repeatedly until true)."""

    def summary(self) -> dict[str, Any]:
        """The service-wide fields of status() (addresses, sizes)."""
        return {}

    def describe(self) -> str:
        """What the "ready" log line names."""
        return self.address

    def plan(self) -> None:
        """Decide the layout (ports) if it is not known yet; called under the home's lock."""
        return None  # a hook: nothing by default

    def after_stop(self) -> None:
        """Remove what only a running service may leave behind (called under the lock)."""
        return None  # a hook: nothing by default

    # ---- layout and state -----------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        """The home's state file: ports and sizes, found again by later starts."""
        return self.home / self.state_name

    def saved_state(self) -> dict[str, Any] | None:
        """What a previous start saved in this home, or None."""
        return load_json(self.state_file)

    def _save_state(self) -> None:
        save_json(self.state_file, self.state())

    def refuse_if_running(self, saved: Sequence[Daemon], setup: str) -> None:
        """ConfigMismatchError if a process of the saved layout `setup` is alive: a running
        service keeps its settings."""
        if any(self.pid(d) for d in saved):
            raise ConfigMismatchError(
                f"{self.service} in {self.home} runs {setup}; stop it first or use another home"
            )

    # ---- processes ------------------------------------------------------------------------

    def pid(self, daemon: Daemon) -> int | None:
        """The pid of the process if it is alive (and really it), else None."""
        pid = read_pid(daemon.pid_file)
        return pid if process_matches(pid, daemon.markers) else None

    def is_running(self) -> bool:
        """Whether every process of the service is alive."""
        daemons = self.daemons()
        return bool(daemons) and all(self.pid(d) for d in daemons)

    def _stray_pids(self) -> list[int]:
        """Processes of this home that no pid file points at (a lost pid file, an old layout)."""
        inside = f"{self.home}{os.sep}"
        return [
            proc.pid
            for proc in processes_mentioning(inside)
            if any(cls in (proc.info["cmdline"] or []) for cls in self.main_classes)
        ]

    # ---- start ----------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> str:
        """Start the processes that are not alive and wait until the service is ready.

        A service already running from this home is reused. Returns `address`.
        """
        started = time.monotonic()
        deadline = Deadline.after(timeout)
        with home_lock(self.home):
            self.plan()
            missing = [d for d in self.daemons() if self.pid(d) is None]
            if missing:
                runtime = self.runtime(ensure_java(self.java))
                ensure_ports_free([p for d in missing for p in d.ports], hint=self.port_hint)
                self._save_state()
                self.prepare(missing, runtime)
                self.spawn_all(missing, runtime, deadline)
            else:
                log.info("%s already running in %s; reusing it", self.service, self.home)
            self.wait_for(self.ready, deadline, self.ready_what)
        log.info("%s ready on %s in %.1f s", self.service, self.describe(),
                 time.monotonic() - started)
        return self.address

    def spawn_all(self, missing: list[Daemon], runtime: Runtime, deadline: Deadline) -> None:
        """Start the missing processes (all at once; a service may order them)."""
        for daemon in missing:
            self.spawn(daemon, runtime)

    def spawn(self, daemon: Daemon, runtime: Runtime) -> None:
        """Start one process in its own session, its output in its console log."""
        ports = ", ".join(str(port) for port, _ in daemon.ports)
        log.info("starting %s on %s:%s", daemon.label, HOST, ports)
        for path in (daemon.console, daemon.log):
            if path is not None:
                self._log_starts[path] = file_size(path)
        env = None
        if runtime.env is not None or daemon.env:
            env = {**(runtime.env if runtime.env is not None else os.environ), **daemon.env}
        daemon.folder.mkdir(parents=True, exist_ok=True)
        self._procs[daemon.name] = spawn(self.command(daemon, runtime), log_file=daemon.console,
                                         pid_file=daemon.pid_file, env=env, cwd=daemon.folder)

    def wait_for(self, predicate: Callable[[], bool], deadline: Deadline, what: str) -> None:
        """Wait until `predicate` holds; a started process that exits meanwhile is an error."""

        def check() -> bool:
            self._raise_if_exited()
            return predicate()

        try:
            wait_until(check, deadline.remaining(), what, 0.25)
        except TimeoutError as exc:
            daemons = self.daemons()
            first = daemons[0].main_log
            raise StartTimeoutError(
                f"{self.service} in {self.home} was not ready within {deadline.total:.0f} s "
                f"(waiting for {what}); see {', '.join(str(d.main_log) for d in daemons)}"
                f"\nLast lines of {first}:\n{tail(first, LOG_TAIL_LINES)}"
            ) from exc

    def _raise_if_exited(self) -> None:
        """ServiceExitedError naming the first started process that has exited, with its log."""
        for daemon in self.daemons():
            proc = self._procs.get(daemon.name)
            if proc is None or (code := proc.poll()) is None:
                continue
            del self._procs[daemon.name]
            daemon.pid_file.unlink(missing_ok=True)
            shown = daemon.console
            text = read_since(shown, self._log_starts.get(shown, 0))
            if not text.strip() and daemon.log is not None:
                shown = daemon.log
                text = read_since(shown, self._log_starts.get(shown, 0))
            last = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
            raise ServiceExitedError(
                f"{daemon.label} exited during start (exit code {code}): {error_summary(text)}; "
                f"see {shown}\nLast lines of {shown}:\n{last}"
            )

    # ---- stop -----------------------------------------------------------------------------

    def stop(self, timeout: float = 30) -> None:
        """Stop every process of the home (SIGTERM, SIGKILL after `timeout`); safe when stopped."""
        if not self.state_file.exists():
            return
        with home_lock(self.home):
            self._stop(self.daemons(), timeout, strays=True)
            self.after_stop()

    def stop_one(self, name: str, timeout: float = 30) -> None:
        """Stop one process of the service (fault tests); the others keep running."""
        found = [d for d in self.daemons() if d.name == name]
        if not found:
            raise ValueError(f"no process {name} in {self.home}")
        with home_lock(self.home):
            self._stop(found, timeout, strays=False)

    def _stop(self, daemons: list[Daemon], timeout: float, strays: bool) -> None:
        alive = [(d, pid) for d in reversed(daemons) if (pid := self.pid(d))]
        pids = [pid for _, pid in alive]
        if strays:
            pids += [p for p in self._stray_pids() if p not in pids]
        if pids:
            log.info("stopping %s in %s (pids %s)", self.service, self.home, pids)
            terminate(pids, timeout)
            self._wait_ports_free([port for d, _ in alive for port, _ in d.ports])
        for daemon in daemons:
            daemon.pid_file.unlink(missing_ok=True)
            proc = self._procs.get(daemon.name)
            if proc is not None and proc.poll() is not None:
                del self._procs[daemon.name]

    def _wait_ports_free(self, ports: list[int]) -> None:
        """Wait until the stopped processes' ports can be bound again (a warning if not)."""
        try:
            wait_until(lambda: all(port_is_free(p) for p in ports), PORT_RELEASE_TIMEOUT,
                       f"ports {ports} to be free", 0.1)
        except TimeoutError:
            log.warning("ports %s of %s in %s are still taken after it stopped",
                        ports, self.service, self.home)

    # ---- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The service's fields (summary()) and per process: pid, alive, answering, log."""
        rows = []
        for daemon in self.daemons():
            pid = self.pid(daemon)
            port = daemon.ports[0][0] if daemon.ports else None
            rows.append({**daemon.info, "pid": pid, "alive": pid is not None,
                         "answering": pid is not None and port is not None and port_answers(port),
                         "log": str(daemon.main_log)})
        return {"home": str(self.home), "running": bool(rows) and all(r["alive"] for r in rows),
                **self.summary(), self.status_key: rows}
