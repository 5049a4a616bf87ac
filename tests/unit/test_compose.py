"""docker-compose.yml and the images, checked without an engine (the compose test,
tests/integration/test_compose_stack.py, runs them under Podman)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

from infra.kafka_local import LocalKafka
from infra.ports import free_ports
from recsys_contract.config import load_config

REPO = Path(__file__).resolve().parents[2]
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
LONG_RUNNING = ("kafka", "spark-master", "spark-worker", "job", "api", "report")
SPARK_SERVICES = ("spark-master", "spark-worker", "job")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def pinned() -> dict[str, str]:
    text = (REPO / "requirements.txt").read_text()
    return {m.group(1).lower(): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)$", text, re.MULTILINE)}


def role_requirements(role: str) -> list[str]:
    lines = (REPO / "docker" / "requirements" / f"{role}.txt").read_text().splitlines()
    return [line.strip().lower() for line in lines if line.strip() and not line.startswith("#")]


def mount_target(mount: str) -> str:
    """The container path of a short-syntax volume ("source:target[:options]")."""
    parts = mount.split(":")
    return parts[-2] if parts[-1] in ("ro", "rw", "z", "Z") else parts[-1]


def readme_submit_line() -> str:
    text = (REPO / "README.md").read_text()
    return re.search(r"^spark-submit --master .*$", text, re.MULTILINE).group(0)


def test_every_part_of_the_stack_is_a_service(compose):
    assert set(compose["services"]) == {"kafka", "spark-master", "spark-worker", "job",
                                        "producer", "api", "report"}


def test_every_image_is_built_here_from_one_dockerfile_by_role(compose):
    builds = {name: (s["build"]["dockerfile"], s["build"]["target"], s["image"])
              for name, s in compose["services"].items()}
    role = {"kafka": "kafka", "spark-master": "spark", "spark-worker": "spark", "job": "spark",
            "producer": "producer", "api": "app", "report": "app"}
    assert builds == {name: ("docker/Dockerfile", r, f"localhost/recsys-{r}:0.1.0")
                      for name, r in role.items()}


def test_the_dockerfile_requires_the_python_of_pyproject():
    requires = re.search(r'requires-python = ">=(\S+)"',
                         (REPO / "pyproject.toml").read_text()).group(1)
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_MIN=(\S+)$", dockerfile, re.MULTILINE).group(1) == requires


def test_each_role_installs_only_pinned_packages_and_only_spark_has_pyspark():
    roles = {role: role_requirements(role) for role in ("producer", "app", "spark", "kafka")}
    unpinned = {name for names in roles.values() for name in names} - set(pinned())
    with_pyspark = {role for role, names in roles.items() if "pyspark" in names}
    assert (unpinned, with_pyspark) == (set(), {"spark"})


def imported_distributions(*packages: str) -> set[str]:
    """The installed distributions that the packages' modules import (lazy imports included;
    the standard library and the project's own packages left out)."""
    own = {"producer", "recsys_contract", "serve", "visualize", "spark_app", "infra"}
    modules = set()
    for package in packages:
        for source in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - own - {"__future__"}
    by_module = packages_distributions()
    return {dist.lower().replace("_", "-") for m in third_party for dist in by_module[m]}


@pytest.mark.parametrize(("image", "packages"), [
    (("producer",), ("producer", "recsys_contract")),
    (("producer", "app"), ("producer", "recsys_contract", "serve", "visualize")),
    (("spark",), ("spark_app", "recsys_contract")),
])
def test_each_python_image_installs_what_its_code_imports(image, packages):
    installed = {name.replace("_", "-") for role in image for name in role_requirements(role)}
    with_pyspark = {"py4j"} if "pyspark" in installed else set()  # pyspark's own dependency
    assert imported_distributions(*packages) - installed - with_pyspark == set()


def test_the_job_runs_scripts_submit_on_the_master(compose):
    job = compose["services"]["job"]
    command = " ".join(job["command"])
    assert ("exec scripts/submit" in command, job["environment"]["SPARK_MASTER_URL"],
            job["environment"]["RECSYS_CONFIG"]) == (
        True, "spark://127.0.0.1:${RECSYS_SPARK_MASTER_PORT:-7077}", "conf/docker.yaml")


def test_scripts_submit_runs_the_readme_command():
    assert readme_submit_line() in (REPO / "scripts" / "submit").read_text()


def test_every_service_is_on_the_host_network_and_every_port_a_variable(compose):
    text = (REPO / "docker-compose.yml").read_text()
    literal_ports = re.findall(r'"(\d{4,5})"', text)
    networks = {s.get("network_mode") for s in compose["services"].values()}
    published = [name for name, s in compose["services"].items() if "ports" in s]
    assert (networks, published, literal_ports) == ({"host"}, [], [])


def test_the_services_listen_on_loopback_only(compose):
    services = compose["services"]
    spark_hosts = [services[n]["command"][services[n]["command"].index("--host") + 1]
                   for n in ("spark-master", "spark-worker")]
    docker = load_config(REPO / "conf" / "docker.yaml")
    job_env = services["job"]["environment"]
    assert (spark_hosts, docker.serve.host, job_env["SPARK_LOCAL_IP"]) == (
        ["127.0.0.1", "127.0.0.1"], "127.0.0.1", "127.0.0.1")


def test_start_order_waits_for_healthy_services(compose):
    services = compose["services"]
    job_deps = services["job"]["depends_on"]
    has_health = {name for name, s in services.items() if "healthcheck" in s}
    assert (job_deps, set(LONG_RUNNING) - {"report"} <= has_health) == (
        {"kafka": {"condition": "service_healthy"},
         "spark-worker": {"condition": "service_healthy"}}, True)


def test_no_service_restarts_in_a_loop(compose):
    policies = {name: s.get("restart", "no") for name, s in compose["services"].items()}
    assert policies == {**{name: "on-failure:3" for name in LONG_RUNNING}, "producer": "no"}


def test_every_spark_container_mounts_results_and_state_where_the_job_looks(compose):
    cfg = load_config(REPO / "conf" / "docker.yaml")
    wanted = {str(cfg.paths.results), str(cfg.paths.state)}
    targets = {name: {mount_target(m) for m in compose["services"][name]["volumes"]}
               for name in SPARK_SERVICES}
    assert targets == {name: wanted for name in SPARK_SERVICES}


def test_kafkas_log_dirs_are_on_its_volume(compose):
    kafka = compose["services"]["kafka"]
    home = kafka["command"][kafka["command"].index("--home") + 1]
    mount = mount_target(next(m for m in kafka["volumes"] if m.startswith("kafka-data:")))
    log_dirs = LocalKafka(Path(home), base_port=9092).node_dir(1) / "data"
    assert log_dirs.is_relative_to(mount) and "kafka-data" in compose["volumes"]


def test_the_parser_is_built_against_the_spark_that_pyspark_ships():
    import pyspark

    root = ET.parse(REPO / "jvm" / "udf" / "pom.xml").getroot()
    props = {c.tag.split("}")[1]: c.text for c in root.find("m:properties", POM_NS)}
    shipped = {p.name for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    wanted = {
        f"spark-sql-api_2.13-{props['spark.version']}.jar",
        f"scala-library-{props['scala.version']}.jar",
        f"jackson-core-{props['jackson.version']}.jar",
    }
    assert wanted - shipped == set()


def test_wait_for_gives_up_with_one_line_when_nothing_answers():
    port = free_ports(1)[0]
    done = subprocess.run([sys.executable, str(REPO / "docker" / "wait-for"), "--timeout", "0.5",
                           f"127.0.0.1:{port}", "--", "true"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (
        1, f"wait-for: 127.0.0.1:{port} did not answer within 0.5 s\n")


def test_require_fails_the_build_with_one_line_on_a_too_old_python():
    done = subprocess.run(["sh", str(REPO / "docker" / "require"), "python", "99.0"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, len(done.stderr.splitlines()), "Python >= 99.0" in done.stderr) == (
        1, 1, True)
