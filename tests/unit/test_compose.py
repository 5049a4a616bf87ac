"""docker-compose.yml cannot run here (no Docker engine), so its content is checked instead."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from recsys_contract.config import load_config

REPO = Path(__file__).resolve().parents[2]
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def pom() -> dict[str, str]:
    root = ET.parse(REPO / "jvm" / "pom.xml").getroot()
    return {child.tag.split("}")[1]: child.text for child in root.find("m:properties", POM_NS)}


def pinned(package: str) -> str:
    text = (REPO / "requirements.txt").read_text()
    return re.search(rf"^{package}==(\S+)$", text, re.MULTILINE).group(1)


def readme_submit_line() -> str:
    text = (REPO / "README.md").read_text()
    return re.search(r"^spark-submit --master .*$", text, re.MULTILINE).group(0)


def test_every_service_the_job_needs_exists(compose):
    assert {"kafka", "topic-init", "spark-master", "spark-worker-1", "spark-worker-2",
            "recsys-job", "producer", "report"} <= set(compose["services"])


def test_images_match_the_pinned_versions(compose, pom):
    services = compose["services"]
    spark_tag = services["spark-master"]["image"].split(":")[1]
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert (
        services["kafka"]["image"], services["topic-init"]["image"], spark_tag.split("-")[0],
        pom["spark.version"], f"FROM {services['spark-master']['image']}" in dockerfile,
    ) == (f"apache/kafka:{pom['kafka.broker.version']}",
          f"apache/kafka:{pom['kafka.broker.version']}", pinned("pyspark"), pinned("pyspark"),
          True)


def test_the_job_is_submitted_to_the_master_with_the_readme_command(compose):
    job = compose["services"]["recsys-job"]
    command = " ".join(job["command"]).replace('\\"', '"')
    assert (readme_submit_line() in command,
            job["environment"]["SPARK_MASTER_URL"]) == (True, "spark://spark-master:7077")


def test_scripts_submit_runs_the_readme_command():
    assert readme_submit_line() in (REPO / "scripts" / "submit").read_text()


def test_the_jars_given_to_the_job_match_the_pom(compose, pom):
    jars = {Path(j).name for j in compose["services"]["recsys-job"]["environment"]
            ["RECSYS_JARS"].split(",")}
    assert jars == {
        f"spark-sql-kafka-0-10_2.13-{pom['spark.version']}.jar",
        f"spark-token-provider-kafka-0-10_2.13-{pom['spark.version']}.jar",
        f"kafka-clients-{pom['spark.kafka.clients.version']}.jar",
        f"commons-pool2-{pom['commons.pool2.version']}.jar",
        "recsys-udf.jar",
    }


def test_start_order_waits_for_healthy_services(compose):
    services = compose["services"]
    job_deps = services["recsys-job"]["depends_on"]
    has_health = {name for name, s in services.items() if "healthcheck" in s}
    assert (job_deps["spark-worker-1"]["condition"], job_deps["spark-worker-2"]["condition"],
            job_deps["topic-init"]["condition"],
            services["topic-init"]["depends_on"]["kafka"]["condition"],
            {"kafka", "spark-master", "spark-worker-1", "spark-worker-2"} <= has_health) == (
        "service_healthy", "service_healthy", "service_completed_successfully",
        "service_healthy", True)


def test_results_and_state_are_volumes(compose):
    mounts = compose["services"]["recsys-job"]["volumes"]
    cfg = load_config(REPO / "conf" / "docker.yaml")
    targets = {m.split(":")[1] for m in mounts}
    assert {str(cfg.paths.results), str(cfg.paths.state)} == targets


def test_the_workers_see_the_jobs_results_and_state_at_the_same_paths(compose):
    services = compose["services"]
    job = set(services["recsys-job"]["volumes"])
    workers = [set(services[name].get("volumes", [])) for name in ("spark-worker-1",
                                                                     "spark-worker-2")]
    assert all(job <= mounts for mounts in workers)


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
