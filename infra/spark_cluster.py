"""A Spark standalone cluster (one master, N workers) on loopback, from the pip pyspark.

Started with pyspark's `spark-class` (the pip package has no start-master scripts), so jobs can
be tested with `spark-submit --master spark://127.0.0.1:PORT` the way they run in production.
The shared shape (home, pid files, start-or-reuse, stop, status) is infra/daemon.py's; what is
Spark's own: the master starts first (a worker that finds no master retries only after 5-15 s),
"ready" means the master lists every worker ALIVE, each worker has its own scratch folder, a
stopped home may restart with other sizes, and jobs are submitted with spark-submit. Everything
lives under one home folder::

    home/
      cluster.json                  ports and sizes: found again by later starts and the CLI
      conf/                         the daemons' SPARK_CONF_DIR (log4j2.properties, defaults)
      master/master.pid, master.out
      worker-<i>/worker.pid, worker.out, work/   (executor logs: work/<app-id>/<executor>/)
      worker-<i>/scratch/           the worker's and its executors' SPARK_LOCAL_DIRS (shuffle,
                                    blocks): no worker shares a local folder with another
      submit/                       logs of submit() runs

Command line: scripts/spark-cluster (infra/spark_cli.py).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.daemon import Daemon, DaemonGroup, Deadline, Runtime
from infra.errors import MissingJarsError, SubmitError
from infra.java import java_home_of
from infra.ports import HOST, free_ports
from infra.processes import error_summary, read_since, terminate

log = logging.getLogger(__name__)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "512m"
# The master and workers only keep books: the quick JIT tier alone starts them faster on 2 cores.
DAEMON_JAVA_OPTS = "-XX:TieredStopAtLevel=1"

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


class LocalSparkCluster(DaemonGroup):
    """A standalone master and `workers` workers on 127.0.0.1, living under `home`."""

    service = "Spark cluster"
    main_classes = (MASTER_CLASS, WORKER_CLASS)
    ready_what = "the Spark workers to register"
    status_key = "daemons"

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
        super().__init__(home, java)
        self.workers_count = workers
        self.cores_per_worker = cores_per_worker
        self.memory_per_worker = memory_per_worker
        self.conf_dir = self.home / "conf"  # the daemons' SPARK_CONF_DIR
        self.ports = self._adopt_ports(master_port, webui_port)
        self.master_url = f"spark://{HOST}:{self.ports.master}"  # for --master
        self.webui_url = f"http://{HOST}:{self.ports.webui}"  # its JSON: webui_url + "/json/"

    # ---- layout ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.master_url

    def describe(self) -> str:
        return f"{self.master_url} ({self.workers_count} worker(s), web UI {self.webui_url})"

    def daemons(self) -> list[Daemon]:
        return self._daemons_of(self.ports)

    def _daemons_of(self, ports: ClusterPorts) -> list[Daemon]:
        """The master and the workers of a cluster on `ports`."""
        master = self.home / "master"
        found = [Daemon(
            name="master", label="Spark master", folder=master,
            pid_file=master / "master.pid", console=master / "master.out",
            markers=(MASTER_CLASS, str(self.conf_dir / "spark-defaults.conf")),
            ports=tuple(ports.of("master")),
            info={"name": "master", "port": ports.master, "webui_port": ports.webui},
        )]
        for index, webui in enumerate(ports.workers, start=1):
            name = f"worker-{index}"
            folder = self.home / name
            found.append(Daemon(
                name=name, label=f"Spark {name}", folder=folder,
                pid_file=folder / "worker.pid", console=folder / "worker.out",
                markers=(WORKER_CLASS, str(folder / "work")),
                ports=tuple(ports.of(name)),
                # A scratch folder of its own, as separate hosts would have.
                env={"SPARK_LOCAL_DIRS": str(folder / "scratch")},
                info={"name": name, "port": None, "webui_port": webui},
            ))
        return found

    def _adopt_ports(self, master_port: int | None, webui_port: int | None) -> ClusterPorts:
        """Saved ports where none were given; refuse other settings while the cluster runs."""
        state = self.saved_state()
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
        self.refuse_if_running(
            self._daemons_of(saved),
            f"with {have[0]} worker(s) x {have[1]} core(s) x {have[2]} on port {have[3]}",
        )
        ports = plan_ports(self.workers_count, master_port or saved.master,
                           webui_port or saved.webui)
        if len(saved.workers) == self.workers_count:
            ports = ClusterPorts(ports.master, ports.webui, saved.workers)
        return ports

    def state(self) -> dict[str, Any]:
        return {
            "master_url": self.master_url,
            "webui_url": self.webui_url,
            "master_port": self.ports.master,
            "webui_port": self.ports.webui,
            "worker_webui_ports": list(self.ports.workers),
            "workers": self.workers_count,
            "cores_per_worker": self.cores_per_worker,
            "memory_per_worker": self.memory_per_worker,
        }

    # ---- start ----------------------------------------------------------------------------

    def runtime(self, java: Path) -> Runtime:
        """The daemons' environment (spark-class reads its settings from there)."""
        env = dict(os.environ)
        env.update(
            {
                "JAVA_HOME": str(java_home_of(java)),
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
        return Runtime(java, env=env)

    def prepare(self, missing: list[Daemon], runtime: Runtime) -> None:
        """The conf folder; the work and scratch folders of the daemons about to start."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        (self.conf_dir / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
        for daemon in missing:
            (daemon.folder / "work").mkdir(parents=True, exist_ok=True)
            if scratch := daemon.env.get("SPARK_LOCAL_DIRS"):
                Path(scratch).mkdir(parents=True, exist_ok=True)

    def command(self, daemon: Daemon, runtime: Runtime) -> list[str]:
        spark_class = str(spark_home() / "bin" / "spark-class")
        props = ["--properties-file", str(self.conf_dir / "spark-defaults.conf")]
        if daemon.name == "master":
            return [spark_class, MASTER_CLASS, "--host", HOST, "--port", str(self.ports.master),
                    "--webui-port", str(self.ports.webui), *props]
        return [
            spark_class, WORKER_CLASS, self.master_url,
            "--host", HOST,
            "--cores", str(self.cores_per_worker),
            "--memory", self.memory_per_worker,
            "--webui-port", str(daemon.info["webui_port"]),
            "--work-dir", str(daemon.folder / "work"),
            *props,
        ]

    def spawn_all(self, missing: list[Daemon], runtime: Runtime, deadline: Deadline) -> None:
        """The master first, until ALIVE: a worker that finds no master retries only later."""
        for daemon in missing:
            self.spawn(daemon, runtime)
            if daemon.name == "master":
                self.wait_for(self._master_ready, deadline, "the Spark master to be ALIVE")

    def _master_ready(self) -> bool:
        state = self.master_state()
        return state is not None and state.get("status") == "ALIVE"

    def ready(self) -> bool:
        """The master lists every worker ALIVE."""
        state = self.master_state()
        return state is not None and alive_workers(state, self.ports.workers) >= len(
            self.ports.workers
        )

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

    def summary(self) -> dict[str, Any]:
        state = self.master_state() if self.pid(self.daemons()[0]) else None
        return {
            "master_url": self.master_url,
            "webui_url": self.webui_url,
            "alive_workers": alive_workers(state, self.ports.workers) if state else 0,
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
