"""A real Apache Kafka broker (KRaft, combined broker+controller) on loopback, from the jars.

Used by the tests (one node, or three for fault tests) and by `scripts/kafka` for local runs.
Everything lives under one home folder::

    home/
      cluster.json          ports, node count and cluster id: found again by later starts
      log4j2.properties     the brokers' logging (one server.log per node)
      node-<id>/
        server.properties
        data/               log.dirs (formatted once, on the first start)
        logs/server.log     the broker's own log; logs/stdout.log its console output
        kafka.pid
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.errors import (
    ConfigMismatchError,
    MissingJarsError,
    NotStartedError,
    ServiceExitedError,
    StartTimeoutError,
    StorageFormatError,
)
from infra.java import ensure_java
from infra.ports import HOST, ensure_ports_free, free_ports, port_answers
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
    write_pid,
)
from infra.wait import wait_until

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPS_DIR = Path(os.environ.get("RECSYS_DEPS_DIR", REPO_ROOT / ".deps"))
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
DEFAULT_HEAP = "512m"
FORMAT_HEAP = "256m"
# Smaller than Kafka's 50: the first consumer group or transaction on 2 cores stays quick.
INTERNAL_TOPIC_PARTITIONS = 10

LOG4J2_PROPERTIES = """\
# Written by infra/kafka_local.py: each broker logs to <node>/logs/server.log.
rootLogger.level = info
rootLogger.appenderRef.file.ref = file

appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2

logger.request.name = kafka.request.logger
logger.request.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
"""

# A broker run in the foreground (a container's main process) logs to its console instead.
LOG4J2_CONSOLE_PROPERTIES = """\
# Written by infra/kafka_local.py: a broker in the foreground logs to its console.
rootLogger.level = info
rootLogger.appenderRef.console.ref = console

appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n

logger.request.name = kafka.request.logger
logger.request.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
"""


@dataclass(frozen=True)
class KafkaNode:
    """One combined broker+controller: its id and its two loopback ports."""

    node_id: int
    client_port: int
    controller_port: int


def plan_nodes(brokers: int, base_port: int | None) -> list[KafkaNode]:
    """Ports for `brokers` nodes: base, base+1 for node 1, base+2, base+3 for node 2, ...

    Without a base port, free ports are picked.
    """
    if brokers < 1:
        raise ValueError(f"brokers must be >= 1, got {brokers}")
    if base_port is None:
        ports = free_ports(2 * brokers)
    else:
        ports = list(range(base_port, base_port + 2 * brokers))
        if ports[-1] > 65535:
            raise ValueError(f"base port {base_port} leaves no room for {brokers} node(s)")
    return [KafkaNode(i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(brokers)]


def bootstrap_of(nodes: list[KafkaNode]) -> str:
    """The bootstrap servers string of the nodes' client listeners."""
    return ",".join(f"{HOST}:{n.client_port}" for n in nodes)


def server_properties(
    node: KafkaNode,
    nodes: list[KafkaNode],
    data_dir: Path,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The broker configuration of `node` in a cluster of `nodes` (combined KRaft mode)."""
    replication = min(3, len(nodes))
    min_isr = 2 if len(nodes) >= 3 else 1
    client = f"PLAINTEXT://{HOST}:{node.client_port}"
    controller = f"CONTROLLER://{HOST}:{node.controller_port}"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "listeners": f"{client},{controller}",
        "advertised.listeners": f"{client},{controller}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "auto.create.topics.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": str(INTERNAL_TOPIC_PARTITIONS),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": str(INTERNAL_TOPIC_PARTITIONS),
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
    }
    if len(nodes) == 1:
        props["controller.quorum.bootstrap.servers"] = f"{HOST}:{node.controller_port}"
    else:
        props["controller.quorum.voters"] = ",".join(
            f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes
        )
    props.update(overrides or {})
    return props


def render_properties(props: Mapping[str, str], header: str) -> str:
    """A Java .properties text, one `key=value` a line, under a comment header."""
    lines = [f"# {header}"] + [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def kafka_classpath(deps_dir: Path = DEPS_DIR) -> list[Path]:
    """The broker's jars from .deps/kafka, with an SLF4J API that matches the log4j2 binding.

    The closure fetched by jvm/pom.xml pairs slf4j-api 1.7 with log4j-slf4j2-impl, which only
    binds to SLF4J 2: the broker would log nothing. If so, pyspark's slf4j-api 2.x replaces it.
    """
    kafka_dir = deps_dir / "kafka"
    jars = sorted(kafka_dir.glob("*.jar"))
    names = [j.name for j in jars]
    for prefix in ("kafka_2.13-", "log4j-core-"):
        if not any(n.startswith(prefix) for n in names):
            raise MissingJarsError(
                f"Kafka jars not found in {kafka_dir} (no {prefix}*.jar); run scripts/setup"
            )
    old_api = [j for j in jars if j.name.startswith("slf4j-api-1.")]
    if old_api and any(n.startswith("log4j-slf4j2-impl-") for n in names):
        newer = _pyspark_slf4j_api()
        if newer is not None:
            jars = [newer] + [j for j in jars if j not in old_api]
        else:
            log.warning("slf4j-api 1.x with log4j-slf4j2-impl: the broker's server.log stays empty")
    return jars


def _pyspark_slf4j_api() -> Path | None:
    """pyspark's bundled slf4j-api 2.x jar, if pyspark is installed."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted((Path(location) / "jars").glob("slf4j-api-2.*.jar"))
        if found:
            return found[-1]
    return None


class LocalKafka:
    """A Kafka cluster of `brokers` combined KRaft nodes on 127.0.0.1, living under `home`."""

    def __init__(
        self,
        home: Path,
        brokers: int = 1,
        base_port: int | None = None,
        *,
        java: str | os.PathLike[str] | None = None,
        deps_dir: Path | None = None,
        heap: str = DEFAULT_HEAP,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(home).absolute()
        self.brokers = brokers
        self.base_port = base_port
        self.java = java
        self.deps_dir = deps_dir or DEPS_DIR
        self.heap = heap
        self.overrides = dict(overrides or {})
        self._nodes: list[KafkaNode] | None = None
        self._cluster_id: str | None = None
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._log_starts: dict[int, int] = {}  # where this run's part of server.log begins
        self._load_state()

    # ---- layout ---------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        """cluster.json: ports, node count and cluster id of this home."""
        return self.home / "cluster.json"

    @property
    def log4j_file(self) -> Path:
        """The log4j2 configuration shared by the nodes."""
        return self.home / "log4j2.properties"

    @property
    def console_log4j_file(self) -> Path:
        """The log4j2 configuration of a broker run in the foreground (console only)."""
        return self.home / "log4j2-console.properties"

    def node_dir(self, node_id: int) -> Path:
        """The folder of one node (config, data, logs, pid)."""
        return self.home / f"node-{node_id}"

    def _props_file(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.properties"

    def _pid_file(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "kafka.pid"

    def log_file(self, node_id: int) -> Path:
        """The broker's own log (server.log) of one node."""
        return self.node_dir(node_id) / "logs" / "server.log"

    def _stdout_file(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "logs" / "stdout.log"

    @property
    def nodes(self) -> list[KafkaNode]:
        """The nodes of this home; NotStartedError before the first start."""
        if self._nodes is None:
            if self.base_port is None:
                raise NotStartedError(f"no Kafka set up in {self.home} yet; call start() first")
            self._nodes = plan_nodes(self.brokers, self.base_port)
        return self._nodes

    @property
    def bootstrap_servers(self) -> str:
        """"127.0.0.1:p1,..." of all nodes."""
        return bootstrap_of(self.nodes)

    def _load_state(self) -> None:
        """Adopt the ports and cluster id a previous start saved; refuse conflicting ones."""
        state = load_json(self.state_file)
        if state is None:
            return
        nodes = [KafkaNode(**n) for n in state["nodes"]]
        if len(nodes) != self.brokers:
            raise ConfigMismatchError(
                f"{self.home} holds a {len(nodes)}-node Kafka, not {self.brokers}; "
                f"pass --brokers {len(nodes)} or use a fresh home"
            )
        if self.base_port is not None and nodes[0].client_port != self.base_port:
            raise ConfigMismatchError(
                f"{self.home} was set up on port {nodes[0].client_port}, not {self.base_port}; "
                f"pass --port {nodes[0].client_port} or use a fresh home"
            )
        self._nodes = nodes
        self._cluster_id = state.get("cluster_id")

    def _save_state(self) -> None:
        save_json(
            self.state_file,
            {
                "brokers": self.brokers,
                "cluster_id": self._cluster_id,
                "bootstrap_servers": self.bootstrap_servers,
                "nodes": [asdict(n) for n in self.nodes],
            },
        )

    # ---- processes ------------------------------------------------------------------------

    def _markers(self, node_id: int) -> list[str]:
        return [KAFKA_MAIN, str(self._props_file(node_id))]

    def _node_pid(self, node_id: int) -> int | None:
        """The pid of the node's live broker process, or None."""
        pid = read_pid(self._pid_file(node_id))
        return pid if process_matches(pid, self._markers(node_id)) else None

    def _stray_pids(self) -> list[int]:
        """Broker processes of this home that no pid file points at (a lost pid file)."""
        pids = []
        for proc in processes_mentioning(str(self.home / "node-")):
            if any(process_matches(proc.pid, self._markers(n.node_id)) for n in self.nodes):
                pids.append(proc.pid)
        return pids

    def is_running(self) -> bool:
        """Whether every node's broker process is alive."""
        return self._nodes is not None and all(self._node_pid(n.node_id) for n in self._nodes)

    # ---- start ----------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> str:
        """Start the missing nodes (formatting storage the first time), wait until all serve.

        A cluster already running from this home is reused. Returns the bootstrap servers.
        """
        started = time.monotonic()
        with home_lock(self.home):
            if self._nodes is None:
                self._nodes = plan_nodes(self.brokers, self.base_port)
            missing = [n for n in self.nodes if self._node_pid(n.node_id) is None]
            if missing:
                self._launch(missing)
            else:
                log.info("Kafka already running in %s; reusing it", self.home)
            self._wait_ready(timeout - (time.monotonic() - started))
        log.info(
            "Kafka ready on %s in %.1f s", self.bootstrap_servers, time.monotonic() - started
        )
        return self.bootstrap_servers

    def _launch(self, missing: list[KafkaNode]) -> None:
        """Write configs, format unformatted storage and start the given nodes."""
        java = ensure_java(self.java)
        classpath = os.pathsep.join(str(j) for j in kafka_classpath(self.deps_dir))
        ensure_ports_free(
            [(n.client_port, f"Kafka node {n.node_id} client listener") for n in missing]
            + [(n.controller_port, f"Kafka node {n.node_id} controller") for n in missing],
            hint="stop that process, or start Kafka with another --port / a fresh home",
        )
        self._write_configs()
        if self._cluster_id is None:
            self._cluster_id = self._random_uuid(java, classpath)
        self._save_state()
        self._format([n for n in missing if not self._formatted(n.node_id)], java, classpath)
        for node in missing:
            log.info("starting Kafka node %d on %s:%d", node.node_id, HOST, node.client_port)
            self._log_starts[node.node_id] = file_size(self.log_file(node.node_id))
            self._procs[node.node_id] = spawn(
                self._broker_command(node, java, classpath),
                log_file=self._stdout_file(node.node_id),
                pid_file=self._pid_file(node.node_id),
                cwd=self.node_dir(node.node_id),
                append=False,
            )

    def foreground_command(self) -> list[str]:
        """Prepare a one-node home and return the command of its broker, for a process that
        becomes the broker itself (`python -m infra.kafka run`, the compose stack's Kafka).

        Configs are written, the storage formatted on the first run only, and the pid file names
        the calling process: it must exec the command, so the pid stays the broker's. The broker
        logs to its console.
        """
        if self.brokers != 1:
            raise ConfigMismatchError(
                f"a broker in the foreground is one node; {self.home} holds {self.brokers}"
            )
        with home_lock(self.home):
            if self._nodes is None:
                self._nodes = plan_nodes(self.brokers, self.base_port)
            node = self.nodes[0]
            if self._node_pid(node.node_id) is not None:
                raise ConfigMismatchError(
                    f"Kafka node {node.node_id} of {self.home} is already running; stop it first"
                )
            java = ensure_java(self.java)
            classpath = os.pathsep.join(str(j) for j in kafka_classpath(self.deps_dir))
            ensure_ports_free(
                [(node.client_port, "Kafka client listener"),
                 (node.controller_port, "Kafka controller")],
                hint="stop that process, or choose another port",
            )
            self._write_configs()
            self.console_log4j_file.write_text(LOG4J2_CONSOLE_PROPERTIES)
            if self._cluster_id is None:
                self._cluster_id = self._random_uuid(java, classpath)
            self._save_state()
            if not self._formatted(node.node_id):
                self._format([node], java, classpath)
            write_pid(self._pid_file(node.node_id), os.getpid())
        return self._broker_command(node, java, classpath, self.console_log4j_file)

    def _write_configs(self) -> None:
        self.log4j_file.write_text(LOG4J2_PROPERTIES)
        for node in self.nodes:
            folder = self.node_dir(node.node_id)
            (folder / "logs").mkdir(parents=True, exist_ok=True)
            props = server_properties(node, self.nodes, folder / "data", self.overrides)
            header = f"Kafka node {node.node_id}, written by infra/kafka_local.py"
            self._props_file(node.node_id).write_text(render_properties(props, header))

    def _broker_command(
        self, node: KafkaNode, java: Path, classpath: str, log4j_file: Path | None = None
    ) -> list[str]:
        return [
            str(java),
            f"-Xmx{self.heap}",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.node_dir(node.node_id) / 'logs'}",
            f"-Dlog4j2.configurationFile={log4j_file or self.log4j_file}",
            "-cp",
            classpath,
            KAFKA_MAIN,
            str(self._props_file(node.node_id)),
        ]

    def _random_uuid(self, java: Path, classpath: str) -> str:
        """A new cluster id from Kafka's own StorageTool."""
        done = subprocess.run(
            [str(java), "-cp", classpath, STORAGE_TOOL, "random-uuid"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        lines = done.stdout.split()
        if done.returncode != 0 or not lines:
            raise StorageFormatError(
                f"kafka StorageTool random-uuid failed (exit {done.returncode}): "
                f"{done.stderr.strip()[-300:]}; check the jars (run scripts/setup)"
            )
        return lines[-1]

    def _formatted(self, node_id: int) -> bool:
        return (self.node_dir(node_id) / "data" / "meta.properties").exists()

    def _format(self, nodes: list[KafkaNode], java: Path, classpath: str) -> None:
        """Format the storage of the nodes (in parallel), with the cluster's id."""
        if not nodes:
            return
        log.info("formatting storage of node(s) %s", ", ".join(str(n.node_id) for n in nodes))
        running: list[tuple[KafkaNode, subprocess.Popen[bytes], Path]] = []
        for node in nodes:
            # No log4j2 file: the tool's errors go to its console, i.e. format.log.
            cmd = [
                str(java),
                f"-Xmx{FORMAT_HEAP}",
                "-cp",
                classpath,
                STORAGE_TOOL,
                "format",
                "--ignore-formatted",
                "-t",
                str(self._cluster_id),
                "-c",
                str(self._props_file(node.node_id)),
            ]
            if self.brokers == 1:
                cmd.append("--standalone")
            out = self.node_dir(node.node_id) / "logs" / "format.log"
            with open(out, "wb") as fh:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
            running.append((node, proc, out))
        for node, proc, out in running:
            code = proc.wait(timeout=120)
            if code != 0:
                raise StorageFormatError(
                    f"formatting storage of Kafka node {node.node_id} failed (exit {code}); "
                    f"see {out}: {error_summary(read_since(out))}"
                )

    def _wait_ready(self, timeout: float) -> None:
        """Wait until every node answers and is registered, unfenced, with the controller."""
        try:
            wait_until(self._ready, max(timeout, 1.0), "Kafka brokers to register", 0.25)
        except TimeoutError as exc:
            raise StartTimeoutError(
                f"Kafka in {self.home} was not ready within {timeout:.0f} s; "
                f"see {self.log_file(self.nodes[0].node_id)}"
            ) from exc

    def _ready(self) -> bool:
        for node_id, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                self._raise_exited(node_id, code)
        if not all(port_answers(n.client_port) for n in self.nodes):
            return False
        return self._registered_brokers() == {n.node_id for n in self.nodes}

    def _raise_exited(self, node_id: int, code: int) -> None:
        del self._procs[node_id]
        self._pid_file(node_id).unlink(missing_ok=True)
        # The console log only gets JVM-level failures (bad heap, missing class); else server.log.
        shown, text = self._stdout_file(node_id), read_since(self._stdout_file(node_id))
        if not text.strip():
            shown = self.log_file(node_id)
            text = read_since(shown, self._log_starts.get(node_id, 0))
        last = "\n".join(text.splitlines()[-15:])
        raise ServiceExitedError(
            f"Kafka node {node_id} exited during start (exit code {code}): "
            f"{error_summary(text)}; see {shown}\nLast lines of {shown}:\n{last}"
        )

    def _registered_brokers(self) -> set[int]:
        """Ids of the brokers the cluster metadata lists as unfenced (empty if unreachable)."""
        from kafka.errors import KafkaError

        try:
            with self._admin(timeout_ms=3000) as admin:
                cluster = admin.describe_cluster()
        except (KafkaError, OSError):
            return set()
        return {b["broker_id"] for b in cluster["brokers"] if not b.get("is_fenced")}

    @contextlib.contextmanager
    def _admin(self, timeout_ms: int = 10000) -> Iterator[Any]:
        """A kafka-python admin client on this cluster, closed afterwards."""
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            client_id="infra-local-kafka",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        try:
            yield admin
        finally:
            admin.close()

    # ---- stop -----------------------------------------------------------------------------

    def stop(self, timeout: float = 30) -> None:
        """Stop every node (SIGTERM, SIGKILL after `timeout`); safe to call when stopped."""
        if self._nodes is None:
            return
        with home_lock(self.home):
            pids = [p for n in self.nodes if (p := self._node_pid(n.node_id))]
            pids += [p for p in self._stray_pids() if p not in pids]
            if pids:
                log.info("stopping Kafka in %s (pids %s)", self.home, pids)
                terminate(pids, timeout)
            for node in self.nodes:
                self._pid_file(node.node_id).unlink(missing_ok=True)
            self._reap()

    def stop_broker(self, node_id: int, timeout: float = 30) -> None:
        """Stop one node of the cluster (fault tests); the others keep running."""
        if node_id not in {n.node_id for n in self.nodes}:
            raise ValueError(f"no node {node_id} in {self.home}")
        pid = self._node_pid(node_id)
        if pid:
            log.info("stopping Kafka node %d (pid %d)", node_id, pid)
            terminate([pid], timeout)
        self._pid_file(node_id).unlink(missing_ok=True)
        self._reap()

    def _reap(self) -> None:
        """Forget our handles on processes that have ended."""
        for node_id, proc in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[node_id]

    # ---- status and topics ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per node: pid, alive, ports (and whether the client port answers)."""
        if self._nodes is None:
            return {"home": str(self.home), "running": False, "bootstrap_servers": None,
                    "nodes": []}
        nodes = []
        for node in self.nodes:
            pid = self._node_pid(node.node_id)
            nodes.append(
                {
                    "node_id": node.node_id,
                    "pid": pid,
                    "alive": pid is not None,
                    "client_port": node.client_port,
                    "controller_port": node.controller_port,
                    "answering": pid is not None and port_answers(node.client_port),
                    "log": str(self.log_file(node.node_id)),
                }
            )
        return {
            "home": str(self.home),
            "running": all(n["alive"] for n in nodes),
            "bootstrap_servers": self.bootstrap_servers,
            "cluster_id": self._cluster_id,
            "nodes": nodes,
        }

    def create_topic(
        self, name: str, partitions: int = 1, replication: int | None = None
    ) -> None:
        """Create a topic and wait until every partition has a leader; an existing one is kept."""
        from kafka.errors import TopicAlreadyExistsError

        factor = replication if replication is not None else min(3, len(self.nodes))
        spec = {name: {"num_partitions": partitions, "replication_factor": factor}}
        with self._admin() as admin:
            try:
                admin.create_topics(spec, timeout_ms=30000, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                log.info("topic %s already exists; kept as it is", name)
                return
        log.info("created topic %s (%d partitions, replication %d)", name, partitions, factor)
