"""A Spark standalone cluster (one master, N workers) on loopback, from the pip pyspark.

Started with pyspark's `spark-class` (the pip package has no start-master scripts), so jobs can
be tested with `spark-submit --master spark://127.0.0.1:PORT` the way they run in production.
Everything lives under one home folder::

    home/
      cluster.json                  ports and sizes: found again by later starts and the CLI
      conf/                         the daemons' SPARK_CONF_DIR (log4j2.properties, defaults)
      master/master.pid, master.out
      worker-<i>/worker.pid, worker.out, work/   (executor logs: work/<app-id>/<executor>/)
      worker-<i>/scratch/           the worker's and its executors' SPARK_LOCAL_DIRS (shuffle,
                                    blocks): no worker shares a local folder with another
      submit/                       logs of submit() runs

Command line: `python -m infra.spark_cluster {start,stop,status}` (see main()).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.cli import EXIT_NOT_RUNNING, configure_logging, resolve_home, run_command
from infra.errors import (
    ConfigMismatchError,
    MissingJarsError,
    ServiceExitedError,
    StartTimeoutError,
    SubmitError,
)
from infra.java import ensure_java, java_home_of
from infra.ports import HOST, ensure_ports_free, free_ports, parse_port
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

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "512m"
# The master and workers only keep books: the quick JIT tier alone starts them faster on 2 cores.
DAEMON_JAVA_OPTS = "-XX:TieredStopAtLevel=1"
DEFAULT_HOME = "var/spark-cluster"
DEFAULT_MASTER_PORT = 7077
DEFAULT_WEBUI_PORT = 8080

LOG4J2_PROPERTIES = """\
# Written by infra/spark_cluster.py: the master's and workers' logs (their .out files).
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
"""

SPARK_DEFAULTS = """\
# Written by infra/spark_cluster.py: passed to the master and workers with --properties-file.
# Applications bring their own settings (spark-submit reads the caller's SPARK_CONF_DIR).
spark.ui.showConsoleProgress false
"""


@dataclass(frozen=True)
class ClusterPorts:
    """The loopback ports of a cluster: master RPC, master web UI, one web UI per worker."""

    master: int
    webui: int
    workers: tuple[int, ...]

    def of(self, name: str) -> list[tuple[int, str]]:
        """(port, what) pairs of one daemon ("master", "worker-<i>"), for the in-use check."""
        if name == "master":
            return [(self.master, "Spark master"), (self.webui, "Spark master web UI")]
        index = int(name.split("-")[1])
        return [(self.workers[index - 1], f"Spark {name} web UI")]


def plan_ports(workers: int, master_port: int | None, webui_port: int | None) -> ClusterPorts:
    """Ports for a cluster of `workers` workers; the ones not given are picked free."""
    picked = iter(free_ports(2 + workers))
    master = master_port if master_port is not None else next(picked)
    webui = webui_port if webui_port is not None else next(picked)
    worker_ports = [next(picked) for _ in range(workers)]
    taken = {master, webui}
    # A picked port must not collide with one that was given.
    worker_ports = [p if p not in taken else free_ports(1)[0] for p in worker_ports]
    return ClusterPorts(master, webui, tuple(worker_ports))


def spark_home() -> Path:
    """The pip pyspark's SPARK_HOME (it holds bin/spark-class and jars/)."""
    from pyspark.find_spark_home import _find_spark_home

    home = Path(_find_spark_home())
    if not (home / "bin" / "spark-class").exists():
        raise MissingJarsError(f"no bin/spark-class in {home}; run scripts/setup (pyspark)")
    return home


def alive_workers(master_state: Mapping[str, Any], webui_ports: Sequence[int]) -> int:
    """How many of our workers (known by web UI port) the master lists as ALIVE."""
    ours = {f":{p}" for p in webui_ports}
    return sum(
        1
        for w in master_state.get("workers", [])
        if w.get("state") == "ALIVE"
        and any(str(w.get("webuiaddress", "")).endswith(p) for p in ours)
    )


# Loopback only: never route these requests through an http_proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_json(url: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """GET a JSON document from a loopback web UI; None if it does not answer."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, urllib.error.URLError, ValueError):
        return None


class LocalSparkCluster:
    """A standalone master and `workers` workers on 127.0.0.1, living under `home`."""

    def __init__(
        self,
        home: Path,
        workers: int = 2,
        cores_per_worker: int = 1,
        memory_per_worker: str = "1g",
        master_port: int | None = None,
        webui_port: int | None = None,
        *,
        java: str | os.PathLike[str] | None = None,
    ) -> None:
        self.home = Path(home).absolute()
        self.workers_count = workers
        self.cores_per_worker = cores_per_worker
        self.memory_per_worker = memory_per_worker
        self.java = java
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_starts: dict[str, int] = {}
        self.ports = self._adopt_ports(master_port, webui_port)

    # ---- layout ---------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        """cluster.json: ports and sizes of this home."""
        return self.home / "cluster.json"

    @property
    def conf_dir(self) -> Path:
        """The daemons' SPARK_CONF_DIR."""
        return self.home / "conf"

    @property
    def master_url(self) -> str:
        """spark://127.0.0.1:PORT, for --master."""
        return f"spark://{HOST}:{self.ports.master}"

    @property
    def webui_url(self) -> str:
        """The master's web UI (its JSON is at webui_url + "/json/")."""
        return f"http://{HOST}:{self.ports.webui}"

    def _dir(self, name: str) -> Path:
        return self.home / name

    def _names(self) -> list[str]:
        return ["master"] + [f"worker-{i}" for i in range(1, self.workers_count + 1)]

    def _pid_file(self, name: str) -> Path:
        return self._dir(name) / f"{name.split('-')[0]}.pid"

    def log_file(self, name: str) -> Path:
        """The console log of a daemon ("master" or "worker-<i>")."""
        return self._dir(name) / f"{name.split('-')[0]}.out"

    def _work_dir(self, name: str) -> Path:
        return self._dir(name) / "work"

    def _markers(self, name: str) -> list[str]:
        if name == "master":
            return [MASTER_CLASS, str(self.conf_dir / "spark-defaults.conf")]
        return [WORKER_CLASS, str(self._work_dir(name))]

    def _adopt_ports(self, master_port: int | None, webui_port: int | None) -> ClusterPorts:
        """Saved ports where none were given; refuse other settings while the cluster runs."""
        state = load_json(self.state_file)
        if state is None:
            return plan_ports(self.workers_count, master_port, webui_port)
        saved = ClusterPorts(state["master_port"], state["webui_port"],
                             tuple(state["worker_webui_ports"]))
        wanted = (self.workers_count, self.cores_per_worker, self.memory_per_worker,
                  master_port or saved.master, webui_port or saved.webui)
        have = (len(saved.workers), state["cores_per_worker"], state["memory_per_worker"],
                saved.master, saved.webui)
        if wanted == have:
            return saved
        if self._any_running(len(saved.workers)):
            raise ConfigMismatchError(
                f"a Spark cluster runs in {self.home} with {have[0]} worker(s) x {have[1]} "
                f"core(s) x {have[2]} on port {have[3]}; stop it first or use another home"
            )
        ports = plan_ports(self.workers_count, master_port or saved.master,
                           webui_port or saved.webui)
        if len(saved.workers) == self.workers_count:
            ports = ClusterPorts(ports.master, ports.webui, saved.workers)
        return ports

    def _any_running(self, workers: int) -> bool:
        """Whether a daemon of a cluster of `workers` workers in this home is alive."""
        names = ["master"] + [f"worker-{i}" for i in range(1, workers + 1)]
        return any(
            process_matches(read_pid(self._pid_file(n)), self._markers(n)) for n in names
        )

    def _save_state(self) -> None:
        save_json(
            self.state_file,
            {
                "master_url": self.master_url,
                "webui_url": self.webui_url,
                "master_port": self.ports.master,
                "webui_port": self.ports.webui,
                "worker_webui_ports": list(self.ports.workers),
                "workers": self.workers_count,
                "cores_per_worker": self.cores_per_worker,
                "memory_per_worker": self.memory_per_worker,
            },
        )

    # ---- processes ------------------------------------------------------------------------

    def _pid(self, name: str) -> int | None:
        """The pid of a live daemon ("master", "worker-<i>"), or None."""
        pid = read_pid(self._pid_file(name))
        return pid if process_matches(pid, self._markers(name)) else None

    def is_running(self) -> bool:
        """Whether the master and every worker process are alive."""
        return all(self._pid(n) for n in self._names())

    def _daemon_env(self, java_home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "JAVA_HOME": str(java_home),
                "SPARK_HOME": str(spark_home()),
                "SPARK_CONF_DIR": str(self.conf_dir),
                "SPARK_LOCAL_IP": HOST,
                "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
                "SPARK_DAEMON_JAVA_OPTS": " ".join(
                    filter(None, [os.environ.get("SPARK_DAEMON_JAVA_OPTS"), DAEMON_JAVA_OPTS])
                ),
                # spark-class first runs a small launcher JVM to build the command line.
                "SPARK_LAUNCHER_OPTS": DAEMON_JAVA_OPTS,
                # Executors start Python workers with this interpreter: the venv's.
                "PYSPARK_PYTHON": sys.executable,
            }
        )
        return env

    def _command(self, name: str) -> list[str]:
        spark_class = str(spark_home() / "bin" / "spark-class")
        props = ["--properties-file", str(self.conf_dir / "spark-defaults.conf")]
        if name == "master":
            return [spark_class, MASTER_CLASS, "--host", HOST, "--port", str(self.ports.master),
                    "--webui-port", str(self.ports.webui), *props]
        index = int(name.split("-")[1])
        return [
            spark_class, WORKER_CLASS, self.master_url,
            "--host", HOST,
            "--cores", str(self.cores_per_worker),
            "--memory", self.memory_per_worker,
            "--webui-port", str(self.ports.workers[index - 1]),
            "--work-dir", str(self._work_dir(name)),
            *props,
        ]

    # ---- start / stop ---------------------------------------------------------------------

    def start(self, timeout: float = 120) -> str:
        """Start what is not running, wait until the master lists every worker ALIVE.

        The master comes first: a worker that finds no master retries only after 5-15 s.
        A cluster already running from this home is reused. Returns the master URL.
        """
        started = time.monotonic()
        deadline = started + timeout
        with home_lock(self.home):
            missing = [n for n in self._names() if self._pid(n) is None]
            if not missing:
                log.info("Spark cluster already running in %s; reusing it", self.home)
            else:
                env = self._prepare(missing)
                if "master" in missing:
                    self._spawn("master", env)
                    self._wait(self._master_ready, deadline, "the Spark master to be ALIVE")
                for name in missing:
                    if name != "master":
                        self._spawn(name, env)
            self._wait(self._workers_ready, deadline, "the Spark workers to register")
        log.info(
            "Spark cluster ready on %s (%d worker(s), web UI %s) in %.1f s",
            self.master_url, self.workers_count, self.webui_url, time.monotonic() - started,
        )
        return self.master_url

    def _prepare(self, missing: list[str]) -> dict[str, str]:
        """Check java and ports, write the conf folder and cluster.json; the daemons' env."""
        java = ensure_java(self.java)
        env = self._daemon_env(java_home_of(java))
        ensure_ports_free(
            [pair for name in missing for pair in self.ports.of(name)],
            hint="stop that process, or use other ports / a fresh home",
        )
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        (self.conf_dir / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
        self._save_state()
        return env

    def _spawn(self, name: str, env: Mapping[str, str]) -> None:
        self._work_dir(name).mkdir(parents=True, exist_ok=True)
        if name != "master":  # scratch of its own, as separate hosts would have
            scratch = self._dir(name) / "scratch"
            scratch.mkdir(parents=True, exist_ok=True)
            env = {**env, "SPARK_LOCAL_DIRS": str(scratch)}
        log.info("starting Spark %s", name)
        self._log_starts[name] = file_size(self.log_file(name))
        self._procs[name] = spawn(
            self._command(name),
            log_file=self.log_file(name),
            pid_file=self._pid_file(name),
            env=env,
            cwd=self._dir(name),
        )

    def _wait(self, predicate: Callable[[], bool], deadline: float, what: str) -> None:
        remaining = max(deadline - time.monotonic(), 1.0)
        try:
            wait_until(predicate, remaining, what, 0.25)
        except TimeoutError as exc:
            raise StartTimeoutError(
                f"timed out waiting for {what} in {self.home}; "
                f"see {self.log_file('master')} and the workers' worker.out"
            ) from exc

    def _check_alive(self) -> None:
        for name, proc in list(self._procs.items()):
            code = proc.poll()
            if code is not None:
                self._raise_exited(name, code)

    def _master_ready(self) -> bool:
        self._check_alive()
        state = self.master_state()
        return state is not None and state.get("status") == "ALIVE"

    def _workers_ready(self) -> bool:
        self._check_alive()
        state = self.master_state()
        return state is not None and alive_workers(state, self.ports.workers) >= len(
            self.ports.workers
        )

    def _raise_exited(self, name: str, code: int) -> None:
        del self._procs[name]
        self._pid_file(name).unlink(missing_ok=True)
        path = self.log_file(name)
        text = read_since(path, self._log_starts.get(name, 0))
        last = "\n".join(text.splitlines()[-15:])
        raise ServiceExitedError(
            f"Spark {name} exited during start (exit code {code}): {error_summary(text)}; "
            f"see {path}\nLast lines of {path}:\n{last}"
        )

    def stop(self, timeout: float = 30) -> None:
        """Stop the workers (with their executors) and the master; safe when stopped."""
        if not self.state_file.exists():
            return
        with home_lock(self.home):
            pids = [p for n in reversed(self._names()) if (p := self._pid(n))]
            pids += [p for p in self._stray_pids() if p not in pids]
            if pids:
                log.info("stopping the Spark cluster in %s (pids %s)", self.home, pids)
                terminate(pids, timeout)
            for name in self._names():
                self._pid_file(name).unlink(missing_ok=True)
            for name, proc in list(self._procs.items()):
                if proc.poll() is not None:
                    del self._procs[name]

    def _stray_pids(self) -> list[int]:
        """Daemons of this home no pid file points at (a lost pid file, a bigger old cluster)."""
        found = []
        for proc in processes_mentioning(str(self.home)):
            cmd = " ".join(proc.info["cmdline"] or [])
            if MASTER_CLASS in cmd or WORKER_CLASS in cmd:
                found.append(proc.pid)
        return found

    # ---- what the master knows ------------------------------------------------------------

    def master_state(self) -> dict[str, Any] | None:
        """The master's JSON (workers, activeapps, completedapps...), None if it is down."""
        return fetch_json(f"{self.webui_url}/json/")

    def workers(self) -> list[dict[str, Any]]:
        """The workers the master knows (id, host, webuiaddress, cores, state...)."""
        return list((self.master_state() or {}).get("workers", []))

    def applications(self) -> dict[str, list[dict[str, Any]]]:
        """The master's applications: {"active": [...], "completed": [...]}."""
        state = self.master_state() or {}
        return {
            "active": list(state.get("activeapps", [])),
            "completed": list(state.get("completedapps", [])),
        }

    def executors(self, app_id: str) -> list[dict[str, Any]]:
        """Executors (running and finished) of one application, from each worker's JSON.

        Each item is the worker's executor entry plus "worker_id"; the master's JSON does not
        say where executors ran.
        """
        found = []
        for worker in self.workers():
            state = fetch_json(f"{worker['webuiaddress']}/json/") or {}
            for entry in state.get("executors", []) + state.get("finishedexecutors", []):
                if entry.get("appid") == app_id:
                    found.append({**entry, "worker_id": worker["id"]})
        return found

    def status(self) -> dict[str, Any]:
        """Per daemon: pid, alive, ports; and how many workers the master lists ALIVE."""
        state = self.master_state() if self._pid("master") else None
        daemons = []
        for name in self._names():
            pid = self._pid(name)
            port = self.ports.master if name == "master" else None
            webui = (self.ports.webui if name == "master"
                     else self.ports.workers[int(name.split("-")[1]) - 1])
            daemons.append({"name": name, "pid": pid, "alive": pid is not None, "port": port,
                            "webui_port": webui, "log": str(self.log_file(name))})
        return {
            "home": str(self.home),
            "running": all(d["alive"] for d in daemons),
            "master_url": self.master_url,
            "webui_url": self.webui_url,
            "alive_workers": alive_workers(state, self.ports.workers) if state else 0,
            "daemons": daemons,
        }

    # ---- submitting -----------------------------------------------------------------------

    def submit_command(
        self, script: Path, args: Sequence[str] = (), conf: Mapping[str, str] | None = None
    ) -> list[str]:
        """The spark-submit command line that runs `script` on this cluster."""
        cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", self.master_url]
        for key, value in (conf or {}).items():
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, str(script), *args]

    def submit(
        self,
        script: Path,
        args: Sequence[str] = (),
        conf: Mapping[str, str] | None = None,
        timeout: float = 300,
    ) -> Path:
        """Run `script` with spark-submit on this cluster, wait for it; returns its log file.

        The driver and the executors use this interpreter (the venv's). A non-zero exit or the
        timeout raises SubmitError naming the log.
        """
        logs = self.home / "submit"
        logs.mkdir(parents=True, exist_ok=True)
        out = logs / f"{Path(script).stem}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        env = dict(os.environ)
        env.update({"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
                    "SPARK_LOCAL_IP": HOST})
        cmd = self.submit_command(script, args, conf)
        log.info("spark-submit %s to %s", script, self.master_url)
        with open(out, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                terminate([proc.pid], 10)
                proc.wait()
                raise SubmitError(
                    f"spark-submit {script} did not finish within {timeout:.0f} s; see {out}"
                ) from None
        if code != 0:
            raise SubmitError(
                f"spark-submit {script} failed (exit {code}): {error_summary(read_since(out))}; "
                f"see {out}"
            )
        return out


# ---- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `python -m infra.spark_cluster`."""
    parser = argparse.ArgumentParser(
        prog="scripts/spark-cluster", description="A local Spark standalone cluster."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("start", "start the master and workers, or reuse them if running"),
        ("stop", "stop the workers (and their executors) and the master"),
        ("status", "show pids and ports; exit 0 if running, 3 if not"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--home", help=f"state folder (default: {DEFAULT_HOME} in the repo)")
        if name == "start":
            cmd.add_argument("--workers", type=int, default=None,
                             help="number of workers (default: as saved, else 2)")
            cmd.add_argument("--cores", type=int, default=None,
                             help="cores per worker (default: saved, else 1)")
            cmd.add_argument("--memory", default=None,
                             help="memory per worker, e.g. 1g (default: saved, else 1g)")
            cmd.add_argument("--port", type=parse_port, default=None,
                             help=f"master port (default: saved, else {DEFAULT_MASTER_PORT})")
            cmd.add_argument("--webui-port", type=parse_port, default=None,
                             help=f"master web UI port (default: saved, else "
                                  f"{DEFAULT_WEBUI_PORT})")
            cmd.add_argument("--timeout", type=float, default=120, help="seconds to wait")
        if name == "stop":
            cmd.add_argument("--timeout", type=float, default=30, help="seconds before SIGKILL")
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print JSON")
    return parser


def open_home(home: Path, args: argparse.Namespace | None = None) -> LocalSparkCluster:
    """A LocalSparkCluster on `home`: saved settings, CLI options where given, else defaults."""
    saved = load_json(home / "cluster.json") or {}
    given = vars(args) if args is not None else {}
    return LocalSparkCluster(
        home,
        workers=given.get("workers") or saved.get("workers", 2),
        cores_per_worker=given.get("cores") or saved.get("cores_per_worker", 1),
        memory_per_worker=given.get("memory") or saved.get("memory_per_worker", "1g"),
        master_port=given.get("port") or (None if saved else DEFAULT_MASTER_PORT),
        webui_port=given.get("webui_port") or (None if saved else DEFAULT_WEBUI_PORT),
    )


def format_status(status: Mapping[str, Any]) -> str:
    """Human-readable status lines."""
    state = "running" if status["running"] else "not running"
    lines = [
        f"Spark cluster in {status['home']}: {state}; {status['master_url']}, web UI "
        f"{status['webui_url']}, {status['alive_workers']} worker(s) ALIVE"
    ]
    for d in status["daemons"]:
        lines.append(f"  {d['name']}: pid {d['pid'] or '-'}, web UI port {d['webui_port']}, "
                     f"log {d['log']}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m infra.spark_cluster`."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    home = resolve_home(args.home, DEFAULT_HOME)

    def command() -> int:
        if args.command == "start":
            open_home(home, args).start(timeout=args.timeout)
            return 0
        if not (home / "cluster.json").exists():
            if args.command == "status":
                sys.stdout.write(f"no Spark cluster set up in {home}\n")
                return EXIT_NOT_RUNNING
            return 0
        cluster = open_home(home)
        if args.command == "stop":
            cluster.stop(timeout=args.timeout)
            return 0
        status = cluster.status()
        sys.stdout.write(json.dumps(status, indent=2) + "\n" if args.json
                         else format_status(status))
        return 0 if status["running"] else EXIT_NOT_RUNNING

    return run_command(command)


if __name__ == "__main__":
    # Run the imported module's main, so log lines name infra.spark_cluster, not __main__.
    from infra.spark_cluster import main as module_main

    sys.exit(module_main())
