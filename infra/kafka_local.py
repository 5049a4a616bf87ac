"""A real Apache Kafka broker (KRaft, combined broker+controller) on loopback, from the jars.

Used by the tests (one node, or three for fault tests) and by `scripts/kafka` for local runs.
The shared shape (home, pid files, start-or-reuse, stop, status) is infra/daemon.py's; what is
Kafka's own: the nodes' ports and properties, formatting each node's storage once with the
cluster's id, and "ready" meaning every broker registered, unfenced. Everything lives under one
home folder::

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

import base64
import contextlib
import importlib.util
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.daemon import DEPS_DIR, Daemon, DaemonGroup, Runtime, require_jars
from infra.errors import ConfigMismatchError, NotStartedError, StorageFormatError
from infra.java import ensure_java
from infra.ports import HOST, ensure_ports_free, free_ports, port_answers
from infra.processes import error_summary, home_lock, read_since, write_pid

log = logging.getLogger(__name__)

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
FORMAT_TIMEOUT = 120  # seconds for StorageTool format
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


def new_cluster_id() -> str:
    """A cluster id as Kafka's StorageTool random-uuid makes it: a random UUID in URL-safe
    base64 without padding, never starting with "-" (the tool's option parser would stumble)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


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
    jars = require_jars(deps_dir / "kafka", ("kafka_2.13-", "log4j-core-"), "Kafka")
    names = [j.name for j in jars]
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


class LocalKafka(DaemonGroup):
    """A Kafka cluster of `brokers` combined KRaft nodes on 127.0.0.1, living under `home`."""

    service = "Kafka"
    main_classes = (KAFKA_MAIN,)
    ready_what = "Kafka brokers to register"
    status_key = "nodes"
    port_hint = "stop that process, or start Kafka with another --port / a fresh home"

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
        super().__init__(home, java)
        self.brokers = brokers
        self.base_port = base_port
        self.deps_dir = deps_dir or DEPS_DIR
        self.heap = heap
        self.overrides = dict(overrides or {})
        self.log4j_file = self.home / "log4j2.properties"  # shared by the nodes
        self._nodes: list[KafkaNode] | None = None
        self._cluster_id: str | None = None
        self._load_state()

    # ---- layout ---------------------------------------------------------------------------

    def node_dir(self, node_id: int) -> Path:
        """The folder of one node (config, data, logs, pid)."""
        return self.home / f"node-{node_id}"

    def _props_file(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.properties"

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

    address = bootstrap_servers

    def _load_state(self) -> None:
        """Adopt the ports and cluster id a previous start saved; refuse conflicting ones."""
        state = self.saved_state()
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

    def state(self) -> dict[str, Any]:
        return {
            "brokers": self.brokers,
            "cluster_id": self._cluster_id,
            "bootstrap_servers": self.bootstrap_servers,
            "nodes": [asdict(n) for n in self.nodes],
        }

    def plan(self) -> None:
        if self._nodes is None:
            self._nodes = plan_nodes(self.brokers, self.base_port)
        if self._cluster_id is None:
            self._cluster_id = new_cluster_id()

    def daemons(self) -> list[Daemon]:
        return [self._daemon(node) for node in self._nodes or []]

    def _daemon(self, node: KafkaNode) -> Daemon:
        folder, label = self.node_dir(node.node_id), f"Kafka node {node.node_id}"
        return Daemon(
            name=f"node-{node.node_id}",
            label=label,
            folder=folder,
            pid_file=folder / "kafka.pid",
            console=folder / "logs" / "stdout.log",
            markers=(KAFKA_MAIN, str(self._props_file(node.node_id))),
            ports=((node.client_port, f"{label} client listener"),
                   (node.controller_port, f"{label} controller")),
            log=folder / "logs" / "server.log",
            info={"node_id": node.node_id, "client_port": node.client_port,
                  "controller_port": node.controller_port},
        )

    # ---- start ----------------------------------------------------------------------------

    def runtime(self, java: Path) -> Runtime:
        return Runtime(java, os.pathsep.join(str(j) for j in kafka_classpath(self.deps_dir)))

    def prepare(self, missing: list[Daemon], runtime: Runtime) -> None:
        """Write every node's configuration; format the storage of the new nodes."""
        self.log4j_file.write_text(LOG4J2_PROPERTIES)
        for node in self.nodes:
            folder = self.node_dir(node.node_id)
            (folder / "logs").mkdir(parents=True, exist_ok=True)
            props = server_properties(node, self.nodes, folder / "data", self.overrides)
            header = f"Kafka node {node.node_id}, written by infra/kafka_local.py"
            self._props_file(node.node_id).write_text(render_properties(props, header))
        unformatted = [d for d in missing if not (d.folder / "data" / "meta.properties").exists()]
        self._format(unformatted, runtime)

    def command(self, daemon: Daemon, runtime: Runtime) -> list[str]:
        return [
            str(runtime.java),
            f"-Xmx{self.heap}",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={daemon.folder / 'logs'}",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp",
            runtime.classpath,
            KAFKA_MAIN,
            str(daemon.folder / "server.properties"),
        ]

    def foreground_command(self) -> list[str]:
        """Prepare a one-node home and return its broker's command line, for a process that
        becomes the broker itself (`scripts/kafka run`, the compose stack's Kafka).

        Configs are written and the storage formatted on the first run only; the pid file names
        the calling process, which must exec the command so that the pid stays the broker's.
        The broker logs to its console.
        """
        if self.brokers != 1:
            raise ConfigMismatchError(
                f"a broker in the foreground is one node; {self.home} holds {self.brokers}")
        with home_lock(self.home):
            self.plan()
            daemon = self.daemons()[0]
            if self.pid(daemon) is not None:
                raise ConfigMismatchError(
                    f"{daemon.label} of {self.home} is already running; stop it first")
            runtime = self.runtime(ensure_java(self.java))
            ensure_ports_free(daemon.ports, hint=self.port_hint)
            self.prepare([daemon], runtime)
            console = self.home / "log4j2-console.properties"
            console.write_text(LOG4J2_CONSOLE_PROPERTIES)
            self._save_state()
            write_pid(daemon.pid_file, os.getpid())
        return [f"-Dlog4j2.configurationFile={console}"
                if arg.startswith("-Dlog4j2.configurationFile=") else arg
                for arg in self.command(daemon, runtime)]

    def _format(self, daemons: list[Daemon], runtime: Runtime) -> None:
        """Format the storage of the nodes (in parallel), with the cluster's id."""
        if not daemons:
            return
        log.info("formatting storage of %s", ", ".join(d.label for d in daemons))
        running: list[tuple[Daemon, subprocess.Popen[bytes], Path]] = []
        for daemon in daemons:
            # No log4j2 file: the tool's errors go to its console, i.e. format.log.
            cmd = [str(runtime.java), f"-Xmx{FORMAT_HEAP}", "-cp", runtime.classpath,
                   STORAGE_TOOL, "format", "--ignore-formatted", "-t", str(self._cluster_id),
                   "-c", str(daemon.folder / "server.properties")]
            if self.brokers == 1:
                cmd.append("--standalone")
            out = daemon.folder / "logs" / "format.log"
            with open(out, "wb") as fh:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
            running.append((daemon, proc, out))
        for daemon, proc, out in running:
            code = proc.wait(timeout=FORMAT_TIMEOUT)
            if code != 0:
                raise StorageFormatError(
                    f"formatting storage of {daemon.label} failed (exit {code}); "
                    f"see {out}: {error_summary(read_since(out))}"
                )

    def ready(self) -> bool:
        """Every node answers and is registered, unfenced, with the controller."""
        if not all(port_answers(n.client_port) for n in self.nodes):
            return False
        return self._registered_brokers() == {n.node_id for n in self.nodes}

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

    # ---- stop and status ------------------------------------------------------------------

    def stop_broker(self, node_id: int, timeout: float = 30) -> None:
        """Stop one node of the cluster (fault tests); the others keep running."""
        self.stop_one(f"node-{node_id}", timeout)

    def summary(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap_servers if self._nodes else None,
                "cluster_id": self._cluster_id}

    # ---- topics ---------------------------------------------------------------------------

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
