"""docker-compose.yml really runs: the images built, the stack started under Podman on the
host's loopback, two runs published and served, a restart mid-stream, a bad setting, `down`.

The tests share one stack (a module fixture) and run in this order. scripts/compose-test runs
them alone; set RECSYS_COMPOSE_PORTS_FROM=N to use the ports N, N+2, ... instead of free ones.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infra.wait import wait_until
from recsys_contract.events import EVENT_ID
from recsys_contract.runs import (
    FACTORS_DIR,
    LATEST,
    RUNS_DIR,
    USER_FACTORS,
    is_hidden,
    parse_latest,
)
from tests.compose_helpers import (
    REPO,
    ComposeStack,
    compose_environment,
    env_flag,
    pick_ports,
    sweep_stale_projects,
)
from tests.kafka_helpers import topic_values

pytestmark = [pytest.mark.integration, pytest.mark.compose, pytest.mark.timeout(3600)]

log = logging.getLogger(__name__)

TOPIC = "sales"
PROJECT_PREFIX = "recsys-test-"  # + the pid of the pytest process
# Small numbers: two runs within minutes on two cores. The job reads at most one threshold per
# micro-batch, so the producer's events make two runs rather than one; the events sent around
# the restart stay below the next threshold, so no training slows that part down.
THRESHOLD = 3000
JOB_ARGS = (f"--set training.threshold={THRESHOLD} --set kafka.max_offsets_per_trigger={THRESHOLD} "
            "--set selection.every_n_runs=0 --set als.max_iter=5")
FIRST_EVENTS = 6500
PRODUCER_ARGS = f"--events {FIRST_EVENTS} --rate 500 --users 300 --products 80"
RESTART_EVENTS = 2000
BAD_SETTING = "--set training.threshold=0"
RESTART_MAX = 3  # docker-compose.yml: the job's `restart: on-failure:3`
# One image per role, each built once (podman-compose would build an image once per service).
BUILD_SERVICES = ("spark-master", "kafka", "producer", "api")
HEALTH_CHECKED = ("kafka", "spark-master", "spark-worker", "job", "api")
# What the JVM itself prints at every start of spark-submit (Spark adds the module): not the
# job's output.
JVM_NOTICE = "WARNING: Using incubator modules: jdk.incubator.vector"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    setup = subprocess.run([str(REPO / "scripts" / "compose-setup")], cwd=REPO,
                           capture_output=True, text=True, timeout=1800)
    assert setup.returncode == 0, setup.stderr[-3000:]
    ports = pick_ports(env_flag("RECSYS_COMPOSE_PORTS_FROM"))
    results = tmp_path_factory.mktemp("compose") / "results"
    results.mkdir()
    env = {**compose_environment(), **{k: str(v) for k, v in ports.items()},
           "RECSYS_RESULTS_DIR": str(results), "RECSYS_JOB_ARGS": JOB_ARGS,
           "RECSYS_PRODUCER_ARGS": PRODUCER_ARGS}
    sweep_stale_projects(PROJECT_PREFIX, env)
    stack = ComposeStack(f"{PROJECT_PREFIX}{os.getpid()}", env)
    stack.ports = ports  # type: ignore[attr-defined]
    stack.results = results  # type: ignore[attr-defined]
    stack.down()
    try:
        started = time.monotonic()
        for service in BUILD_SERVICES:
            stack.compose("build", service, timeout=3600)
        log.info("images built in %.1f s", time.monotonic() - started)
        stack.compose("up", "-d", timeout=900)
        yield stack
    finally:
        for service in ("job", "kafka", "api"):
            log.info("last lines of %s:\n%s", service, "\n".join(
                stack.logs(service).splitlines()[-30:]))
        stack.down()


def kafka_address(stack: ComposeStack) -> str:
    return f"127.0.0.1:{stack.ports['RECSYS_KAFKA_PORT']}"  # type: ignore[attr-defined]


def published_runs(results: Path) -> list[str]:
    """The ids of the published runs (a run folder appears whole, by one rename)."""
    runs = results / RUNS_DIR
    return sorted(p.name for p in runs.iterdir() if not is_hidden(p.name)) if runs.is_dir() else []


def job_alive(stack: ComposeStack) -> bool:
    """True while the job's container runs; an AssertionError with its log once it stopped."""
    status, code, _ = stack.state("job")
    if status == "exited":
        raise AssertionError(f"the job exited ({code}):\n{stack.logs('job')[-4000:]}")
    return True


def stored_event_ids(state: Path) -> list[str]:
    """Every event id in the job's store (Parquet under the state volume; `_staging` skipped)."""
    ids: list[str] = []
    for part in sorted((state / "events").glob("batch_id=*/seq_base=*/*.parquet")):
        ids.extend(pq.read_table(part, columns=[EVENT_ID]).column(EVENT_ID).to_pylist())
    return ids


def get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_the_stack_comes_up_healthy(stack):
    def all_healthy() -> bool:
        return job_alive(stack) and all(stack.healthy(s) for s in HEALTH_CHECKED)

    wait_until(all_healthy, 900, "every service's health check to pass", 2.0)


def test_two_runs_are_published_and_the_api_serves_the_latest(stack):
    results: Path = stack.results  # type: ignore[attr-defined]
    started = time.monotonic()
    wait_until(lambda: job_alive(stack) and len(published_runs(results)) >= 2, 1500,
               "two published runs", 2.0)
    log.info("two runs published %.0f s after the stack was healthy", time.monotonic() - started)
    api = f"http://127.0.0.1:{stack.ports['RECSYS_API_PORT']}"  # type: ignore[attr-defined]

    def served_from_latest() -> bool:
        latest = parse_latest((results / LATEST).read_text())
        users = pq.read_table(results / RUNS_DIR / latest / FACTORS_DIR / USER_FACTORS,
                              columns=["user_id"]).column("user_id").to_pylist()
        answer = get_json(f"{api}/recommendations/{urllib.parse.quote(users[0], safe='')}")
        return bool(answer and answer["run_id"] == latest and answer["items"])

    wait_until(served_from_latest, 300, "a recommendation from the latest run", 1.0)


def test_kafka_keeps_its_log_on_its_volume(stack):
    data = stack.volume_dir("kafka-data") / "node-1" / "data"
    assert sorted(p.name for p in data.glob(f"{TOPIC}-*")) == [f"{TOPIC}-{p}" for p in range(4)]


def test_a_restart_mid_stream_stores_every_produced_event_once(stack):
    kafka = kafka_address(stack)
    wait_until(lambda: stack.state("producer")[0] == "exited", 600, "the producer to finish")
    assert stack.state("producer")[:2] == ("exited", 0), stack.logs("producer")[-2000:]
    producer = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "producer", "--bootstrap-servers", kafka,
         "--topic", TOPIC, "--events", str(RESTART_EVENTS), "--rate", "400", "--users", "300",
         "--products", "80", "--id-prefix", "restart-", "--progress", "off"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        state = stack.volume_dir("recsys-state")
        before = len(stored_event_ids(state))
        wait_until(lambda: len(stored_event_ids(state)) > before, 300,
                   "the job to store some of the new events", 0.5)
        stopped = time.monotonic()
        stack.compose("stop", "-t", "60", "job", timeout=300)
        log.info("the job's container stopped in %.1f s", time.monotonic() - stopped)
        # SIGTERM reaches the spark-submit JVM (PID 1): a clean stop exits 0 with its line.
        clean_stop = (stack.state("job")[:2], "stopped (SIGTERM)" in stack.logs("job"))
        stack.compose("start", "job", timeout=300)
        assert producer.wait(timeout=600) == 0, producer.stdout.read()[-2000:]
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    produced = sorted(json.loads(v)[EVENT_ID] for v in topic_values(kafka, TOPIC))
    wait_until(lambda: job_alive(stack) and len(stored_event_ids(state)) >= len(produced), 900,
               "the job to store every produced event", 2.0)
    assert (clean_stop, sorted(stored_event_ids(state)) == produced) == (
        (("exited", 0), True), True), stack.logs("job")[-4000:]


def test_a_bad_setting_stops_the_job_with_exit_2_without_a_restart_loop(stack):
    stack.compose("up", "-d", "--no-deps", "job", timeout=600,
                  env={"RECSYS_JOB_ARGS": BAD_SETTING})

    def given_up() -> tuple[str, int, int] | None:
        status, code, restarts = stack.state("job")
        return (status, code, restarts) if status == "exited" and restarts >= RESTART_MAX \
            else None

    status, code, restarts = wait_until(given_up, 600, "the job to give up", 1.0)
    # The policy Podman applied: what keeps the container stopped from now on.
    policy = stack.inspect("job")["HostConfig"]["RestartPolicy"]
    lines = [line for line in stack.logs("job").splitlines()
             if line.strip() and line.strip() != JVM_NOTICE]
    assert (status, code, restarts, policy, len(lines),
            all("invalid configuration: training.threshold" in line for line in lines)) == (
        "exited", 2, RESTART_MAX, {"Name": "on-failure", "MaximumRetryCount": RESTART_MAX},
        RESTART_MAX + 1, True), "\n".join(lines[-20:])


def test_down_removes_every_container_volume_and_network(stack):
    left_by_down = stack.down()
    assert (left_by_down, stack.leftovers()) == (
        {"containers": [], "volumes": [], "networks": []},
        {"containers": [], "volumes": [], "networks": []})
