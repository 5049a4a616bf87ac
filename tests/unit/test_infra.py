"""Unit tests of infra's pure helpers: config rendering, ports, java checks, error messages.

No broker, no Spark, no JVM: these run in a second.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import stat
import sys
from pathlib import Path

import psutil
import pytest

from infra import java as java_mod
from infra import kafka_cli, spark_cli, spark_cluster
from infra.cli import StartOption
from infra.daemon import Daemon, DaemonGroup, Runtime
from infra.errors import (
    ConfigMismatchError,
    JavaNotFoundError,
    JavaVersionError,
    MissingJarsError,
    NotStartedError,
    PortInUseError,
    ServiceExitedError,
    StartTimeoutError,
)
from infra.java import ensure_java, find_java, newest_installed_jdk, parse_java_major
from infra.kafka_local import (
    LocalKafka,
    bootstrap_of,
    kafka_classpath,
    new_cluster_id,
    plan_nodes,
    render_properties,
    server_properties,
)
from infra.ports import (
    ensure_ports_free,
    free_ports,
    parse_host_ports,
    parse_port,
    port_answers,
    port_is_free,
)
from infra.processes import error_summary, read_pid, write_pid
from infra.spark_cluster import ClusterPorts, alive_workers, plan_ports
from infra.wait import wait_until


def test_plan_nodes_from_base_port_pairs_client_and_controller_ports() -> None:
    nodes = plan_nodes(3, 9092)
    assert [(n.node_id, n.client_port, n.controller_port) for n in nodes] == [
        (1, 9092, 9093),
        (2, 9094, 9095),
        (3, 9096, 9097),
    ]
    assert bootstrap_of(nodes) == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"


def test_plan_nodes_without_base_port_picks_distinct_free_ports() -> None:
    nodes = plan_nodes(3, None)
    ports = [p for n in nodes for p in (n.client_port, n.controller_port)]
    assert len(set(ports)) == 6


@pytest.mark.parametrize(("brokers", "base"), [(0, 9092), (1, 65535)])
def test_plan_nodes_rejects_impossible_layouts(brokers: int, base: int) -> None:
    with pytest.raises(ValueError):
        plan_nodes(brokers, base)


def test_single_node_properties_use_a_standalone_dynamic_quorum(tmp_path: Path) -> None:
    (node,) = plan_nodes(1, 9092)
    props = server_properties(node, [node], tmp_path / "data")
    expected_subset = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.bootstrap.servers": "127.0.0.1:9093",
        "log.dirs": str(tmp_path / "data"),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
    }
    assert {k: props.get(k) for k in expected_subset} == expected_subset
    assert "controller.quorum.voters" not in props


def test_three_node_properties_list_all_voters_and_replicate_three_times(
    tmp_path: Path,
) -> None:
    nodes = plan_nodes(3, 19092)
    props = server_properties(nodes[1], nodes, tmp_path, overrides={"num.partitions": "4"})
    expected_subset = {
        "node.id": "2",
        "controller.quorum.voters": "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "min.insync.replicas": "2",
        "default.replication.factor": "3",
        "num.partitions": "4",
    }
    assert {k: props.get(k) for k in expected_subset} == expected_subset
    assert "controller.quorum.bootstrap.servers" not in props


def test_render_properties_writes_one_key_a_line() -> None:
    text = render_properties({"a.b": "1", "c": "x,y"}, "header")
    assert text == "# header\na.b=1\nc=x,y\n"


@pytest.mark.parametrize(("text", "port"), [("9092", 9092), ("1", 1), ("65535", 65535)])
def test_parse_port_accepts_valid_ports(text: str, port: int) -> None:
    assert parse_port(text) == port


@pytest.mark.parametrize("text", ["0", "65536", "-1", "abc", ""])
def test_parse_port_rejects_invalid_ports(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_port(text)


def test_parse_host_ports_splits_a_bootstrap_string() -> None:
    assert parse_host_ports("127.0.0.1:9092, localhost:9094") == [
        ("127.0.0.1", 9092),
        ("localhost", 9094),
    ]
    with pytest.raises(ValueError, match="not host:port"):
        parse_host_ports("127.0.0.1")


def test_ensure_ports_free_names_the_taken_port_and_what_it_was_for() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(PortInUseError) as caught:
            pairs = [(free_ports(1)[0], "free one"), (port, "Kafka node 1")]
            ensure_ports_free(pairs, "pick another")
    message = str(caught.value)
    assert f"port {port} on 127.0.0.1 (Kafka node 1) is already in use" in message
    assert message.endswith("; pick another")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ("    java.specification.version = 17\n", 17),
        ("java.specification.version = 1.8", 8),
        ("java.specification.version = 21", 21),
        ("openjdk version 17", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


def _fake_java(folder: Path, version: str) -> Path:
    """A script that answers -XshowSettings like a JDK of `version`."""
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '    java.specification.version = {version}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


def test_old_java_is_refused_with_a_hint_to_set_java_home(tmp_path: Path) -> None:
    java = _fake_java(tmp_path, "11")
    with pytest.raises(JavaVersionError, match=r"Java 11; .*set JAVA_HOME to a JDK 17\+"):
        ensure_java(java)


def test_new_enough_java_is_accepted(tmp_path: Path) -> None:
    java = _fake_java(tmp_path, "21")
    assert ensure_java(java) == java


def test_bogus_java_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(JavaNotFoundError, match="does not exist.*set JAVA_HOME"):
        find_java(tmp_path / "nope" / "java")


def test_java_home_without_java_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match=f"JAVA_HOME={tmp_path} has no bin/java"):
        find_java()


def test_no_java_anywhere_says_to_install_and_set_java_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(java_mod, "JVM_DIRS", (tmp_path / "jvm",))
    with pytest.raises(JavaNotFoundError, match="no java on PATH.*set JAVA_HOME"):
        find_java()


def test_java_home_is_used_before_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = _fake_java(tmp_path, "17")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert find_java() == java


def _fake_jdk(jvm: Path, name: str, release: str | None) -> Path:
    """A JDK home under `jvm` with bin/java and, unless None, a release file."""
    home = jvm / name
    _fake_java(home, "0")
    if release is not None:
        (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{release}"\n')
    return home


def test_newest_installed_jdk_is_the_highest_version_of_17_or_more(tmp_path: Path) -> None:
    jvm = tmp_path / "jvm"
    _fake_jdk(jvm, "java-17-openjdk-amd64", "17.0.15")
    newest = _fake_jdk(jvm, "temurin-25-jdk-amd64", "25.0.3")
    _fake_jdk(jvm, "zulu-11", "11.0.2")
    _fake_jdk(jvm, "broken", None)
    (jvm / "not-a-jdk.jinfo").write_text("")
    assert newest_installed_jdk((jvm, tmp_path / "absent")) == newest


def test_java_home_wins_over_installed_jdks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_jdk(tmp_path / "jvm", "temurin-25", "25.0.3")
    monkeypatch.setattr(java_mod, "JVM_DIRS", (tmp_path / "jvm",))
    java = _fake_java(tmp_path / "home", "17")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "home"))
    assert find_java() == java


def test_newest_installed_jdk_wins_over_path_when_java_home_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _fake_jdk(tmp_path / "jvm", "temurin-25", "25.0.3")
    monkeypatch.setattr(java_mod, "JVM_DIRS", (tmp_path / "jvm",))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    _fake_java(tmp_path / "path", "17")
    monkeypatch.setenv("PATH", str(tmp_path / "path" / "bin"))
    assert find_java() == home / "bin" / "java"


def test_missing_kafka_jars_say_run_setup(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    with pytest.raises(MissingJarsError, match=r"Kafka jars not found in .*; run scripts/setup"):
        kafka_classpath(tmp_path)


def test_classpath_swaps_slf4j_1_for_2_when_the_binding_needs_it(tmp_path: Path) -> None:
    folder = tmp_path / "kafka"
    folder.mkdir()
    for name in ("kafka_2.13-4.3.1", "log4j-core-2.25.3", "log4j-slf4j2-impl-2.25.3",
                 "slf4j-api-1.7.36"):
        (folder / f"{name}.jar").touch()
    names = [p.name for p in kafka_classpath(tmp_path)]
    assert "slf4j-api-1.7.36.jar" not in names
    assert any(n.startswith("slf4j-api-2.") for n in names)


def test_error_summary_takes_the_first_log4j_error_with_its_exception() -> None:
    log = (
        "[t] INFO starting (kafka.Kafka$)\n"
        "[t] ERROR Unable to start acceptor for PLAINTEXT (kafka.network.DataPlaneAcceptor)\n"
        "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:1\n"
        "\tat kafka.network.Acceptor.openServerSocket(SocketServer.scala:1)\n"
        "[t] ERROR Exiting Kafka due to fatal exception (kafka.Kafka$)\n"
        "[t] INFO shutting down (kafka.server.BrokerServer)\n"
    )
    assert error_summary(log) == (
        "[t] ERROR Unable to start acceptor for PLAINTEXT (kafka.network.DataPlaneAcceptor): "
        "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:1"
    )


def test_error_summary_of_a_console_log_takes_the_innermost_cause() -> None:
    log = (
        'Exception in thread "main" java.lang.RuntimeException: outer\n'
        "\tat x.y(Z.java:1)\n"
        "Caused by: java.io.IOException: disk full\n"
        "\tat a.b(C.java:2)\n"
    )
    assert error_summary(log) == "Caused by: java.io.IOException: disk full"
    assert error_summary("") == "(empty log)"


def test_pid_files_round_trip(tmp_path: Path) -> None:
    pid_file = tmp_path / "x" / "a.pid"
    assert read_pid(pid_file) is None
    write_pid(pid_file, 4242)
    assert read_pid(pid_file) == 4242


def test_wait_until_returns_the_truthy_value() -> None:
    answers = iter([None, 0, "ready"])
    assert wait_until(lambda: next(answers), timeout=5, what="x", interval=0.001) == "ready"


def test_wait_until_names_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match="waiting for the moon"):
        wait_until(lambda: False, timeout=0.05, what="the moon", interval=0.01)


def test_wait_until_lets_the_predicate_abort() -> None:
    def broken() -> bool:
        raise RuntimeError("process died")

    with pytest.raises(RuntimeError, match="process died"):
        wait_until(broken, timeout=5, what="x")


def _write_kafka_state(home: Path, client_ports: list[int]) -> None:
    home.mkdir(parents=True)
    nodes = [{"node_id": i + 1, "client_port": p, "controller_port": p + 1}
             for i, p in enumerate(client_ports)]
    (home / "cluster.json").write_text(json.dumps(
        {"brokers": len(nodes), "cluster_id": "x", "nodes": nodes}))


def test_saved_ports_are_reused_by_a_new_object(tmp_path: Path) -> None:
    _write_kafka_state(tmp_path / "k", [19092])
    assert LocalKafka(tmp_path / "k").bootstrap_servers == "127.0.0.1:19092"


def test_a_home_refuses_another_port_or_node_count(tmp_path: Path) -> None:
    _write_kafka_state(tmp_path / "k", [19092])
    with pytest.raises(ConfigMismatchError, match="set up on port 19092, not 29092"):
        LocalKafka(tmp_path / "k", base_port=29092)
    with pytest.raises(ConfigMismatchError, match="1-node Kafka, not 3; pass --brokers 1"):
        LocalKafka(tmp_path / "k", brokers=3)


def test_unstarted_kafka_has_no_bootstrap_and_is_not_running(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "k")
    with pytest.raises(NotStartedError, match="call start"):
        _ = kafka.bootstrap_servers
    assert kafka.status()["running"] is False
    kafka.stop()  # nothing to stop: no error


def test_kafka_cli_status_of_an_empty_home_exits_3(tmp_path: Path) -> None:
    assert kafka_cli.main(["status", "--home", str(tmp_path / "none")]) == 3


def test_kafka_cli_parses_start_options() -> None:
    args = kafka_cli.build_parser().parse_args(["start", "--brokers", "3", "--port", "19092"])
    assert (args.command, args.brokers, args.port) == ("start", 3, 19092)
    with pytest.raises(SystemExit):
        kafka_cli.build_parser().parse_args(["start", "--brokers", "2"])


def test_kafka_cli_formats_status_lines() -> None:
    status = {
        "home": "/h", "running": True, "bootstrap_servers": "127.0.0.1:9092",
        "nodes": [{"node_id": 1, "pid": 7, "alive": True, "client_port": 9092,
                   "controller_port": 9093, "log": "/h/node-1/logs/server.log"}],
    }
    assert kafka_cli.format_status(status) == (
        "Kafka in /h: running; bootstrap 127.0.0.1:9092\n"
        "  node 1: pid 7, client port 9092, controller port 9093, "
        "log /h/node-1/logs/server.log\n"
    )


def test_plan_ports_keeps_given_ports_and_picks_distinct_others() -> None:
    ports = plan_ports(2, 17077, 18080)
    assert (ports.master, ports.webui) == (17077, 18080)
    assert len({ports.master, ports.webui, *ports.workers}) == 4
    assert ports.of("worker-2") == [(ports.workers[1], "Spark worker-2 web UI")]


def test_alive_workers_counts_only_our_alive_workers() -> None:
    state = {"workers": [
        {"state": "ALIVE", "webuiaddress": "http://127.0.0.1:4001"},
        {"state": "DEAD", "webuiaddress": "http://127.0.0.1:4002"},
        {"state": "ALIVE", "webuiaddress": "http://127.0.0.1:4003"},
        {"state": "ALIVE", "webuiaddress": "http://127.0.0.1:5000"},
    ]}
    assert alive_workers(state, [4001, 4002, 4003]) == 2


def test_spark_cluster_urls_and_saved_ports(tmp_path: Path) -> None:
    cluster = spark_cluster.LocalSparkCluster(tmp_path, workers=2, master_port=17077,
                                              webui_port=18080)
    assert cluster.master_url == "spark://127.0.0.1:17077"
    assert cluster.webui_url == "http://127.0.0.1:18080"
    cluster._save_state()
    again = spark_cluster.LocalSparkCluster(tmp_path, workers=2)
    assert again.ports == cluster.ports
    assert isinstance(again.ports, ClusterPorts)


def test_spark_cli_status_of_an_empty_home_exits_3(tmp_path: Path) -> None:
    assert spark_cli.main(["status", "--home", str(tmp_path / "none")]) == 3


def test_new_cluster_ids_are_16_bytes_in_unpadded_url_safe_base64_never_led_by_a_dash() -> None:
    ids = {new_cluster_id() for _ in range(300)}
    decoded = {len(base64.urlsafe_b64decode(i + "==")) for i in ids}
    assert (len(ids), {len(i) for i in ids}, decoded, sorted(i for i in ids if i[0] == "-")) == (
        300, {22}, {16}, [])


def test_start_options_take_the_given_value_then_the_saved_one_then_the_default() -> None:
    workers = StartOption("--workers", "workers", "workers", 2, saved_key="workers")
    port = StartOption("--port", "master_port", "port", 7077, type=parse_port)
    given = argparse.Namespace(workers=4, port=17077)
    unset = argparse.Namespace(workers=None, port=None)
    saved = {"workers": 3, "master_port": 27077}
    values = [(workers.value(args, state), port.value(args, state))
              for args, state in ((given, saved), (unset, saved), (unset, None), (None, saved))]
    # A saved port is adopted by the service itself (None), never replaced by the default.
    assert values == [(4, 17077), (3, None), (2, 7077), (3, None)]


class PythonHttpServer(DaemonGroup):
    """The shared base with a process that is no JVM: Python's http.server on one port."""

    service = "test server"
    state_name = "server.json"
    main_classes = ("http.server",)
    ready_what = "the test server to answer"

    def __init__(self, home: Path, java: Path, script: str | None = None) -> None:
        super().__init__(home, java)
        saved = self.saved_state()
        self.port = saved["port"] if saved else free_ports(1)[0]
        self.script = script  # set: this Python code runs instead of the server

    def daemons(self) -> list[Daemon]:
        return [Daemon("server", "test server", self.home, self.home / "server.pid",
                       self.home / "server.out", ("http.server", str(self.home / "www")),
                       ((self.port, "test server"),))]

    def state(self) -> dict[str, int]:
        return {"port": self.port}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def prepare(self, missing: list[Daemon], runtime: Runtime) -> None:
        (self.home / "www").mkdir(parents=True, exist_ok=True)

    def command(self, daemon: Daemon, runtime: Runtime) -> list[str]:
        if self.script is not None:  # with the server's markers, so that stop() finds it
            return [sys.executable, "-c", self.script, *daemon.markers]
        return [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                "--directory", str(self.home / "www")]

    def ready(self) -> bool:
        return port_answers(self.port)


def test_a_second_start_reuses_the_process_and_stop_frees_its_port(tmp_path: Path) -> None:
    java, home = _fake_java(tmp_path / "jdk", "21"), tmp_path / "home"
    try:
        first = PythonHttpServer(home, java)
        first.start(timeout=60)
        (row,) = first.status()["processes"]
        again = PythonHttpServer(home, java)
        reused = (again.start(timeout=30), again.status()["processes"][0]["pid"])
        again.stop(timeout=10)
        after = (again.is_running(), port_is_free(first.port), (home / "server.pid").exists())
    finally:
        PythonHttpServer(home, java).stop(timeout=5)
    assert (row["alive"], row["answering"], reused, after) == (
        True, True, (f"127.0.0.1:{first.port}", row["pid"]), (False, True, False))


def test_stop_finds_a_process_whose_pid_file_was_lost(tmp_path: Path) -> None:
    java, home = _fake_java(tmp_path / "jdk", "21"), tmp_path / "home"
    server = PythonHttpServer(home, java)
    try:
        server.start(timeout=60)
        pid = server.status()["processes"][0]["pid"]
        (home / "server.pid").unlink()
        PythonHttpServer(home, java).stop(timeout=10)
        assert not psutil.pid_exists(pid)
    finally:
        server.stop(timeout=5)


def test_a_process_that_dies_during_start_is_named_with_its_log(tmp_path: Path) -> None:
    java, home = _fake_java(tmp_path / "jdk", "21"), tmp_path / "home"
    fail = "import sys; print('cannot bind: disk full', file=sys.stderr); sys.exit(3)"
    server = PythonHttpServer(home, java, script=fail)
    with pytest.raises(ServiceExitedError) as caught:
        server.start(timeout=60)
    first, *rest = str(caught.value).splitlines()
    assert (first, rest[-1], (home / "server.pid").exists()) == (
        "test server exited during start (exit code 3): cannot bind: disk full; "
        f"see {home / 'server.out'}", "cannot bind: disk full", False)


def test_a_service_not_ready_in_time_is_named_with_its_log_and_stops(tmp_path: Path) -> None:
    java, home = _fake_java(tmp_path / "jdk", "21"), tmp_path / "home"
    stuck = "import time; print('still loading the catalog', flush=True); time.sleep(120)"
    server = PythonHttpServer(home, java, script=stuck)
    try:
        with pytest.raises(StartTimeoutError) as caught:
            server.start(timeout=3)
    finally:
        server.stop(timeout=10)
    first, *rest = str(caught.value).splitlines()
    assert (first, rest[-1], server.is_running()) == (
        f"test server in {home} was not ready within 3 s (waiting for the test server to "
        f"answer); see {home / 'server.out'}", "still loading the catalog", False)
