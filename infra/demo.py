"""The demo: the whole pipeline on this machine, from a broker to an HTML report.

    scripts/demo [--events 25000] [--threshold 10000]

Starts (or reuses) the local Kafka broker, creates the topic, submits the streaming job with
spark-submit in local mode, streams simulator sales until two more training runs are
published, renders the report and prints where everything is. Every process it started is
stopped at the end, also on Ctrl-C or failure. Run it again and it continues from its data
and checkpoint: the new sales get new event ids, nothing is read twice.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from infra.errors import InfraError
from infra.kafka_local import LocalKafka
from infra.ports import free_ports
from infra.wait import wait_until
from recsys_contract.config import AppConfig, load_config
from recsys_contract.errors import InvalidConfigError
from recsys_contract.events import QUARANTINE_DIR
from recsys_contract.runs import (
    EDGE_SRC,
    EDGES_CSV,
    LATEST,
    MANIFEST,
    REJECTED_DIR,
    RUNS_DIR,
    USER_VERTEX_PREFIX,
    Manifest,
    is_hidden,
    parse_latest,
)

log = logging.getLogger("demo")
REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Loopback only, whatever proxy the environment names.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class DemoOptions:
    events: int = 25_000
    threshold: int | None = None  # None: training.threshold of `config`
    rate: int = 5_000
    users: int = 2_000
    products: int = 400
    partitions: int = 4
    bad_ratio: float = 0.01
    kafka_home: Path = REPO / "var" / "kafka"
    kafka_port: int | None = 9092
    state: Path = REPO / "var" / "demo" / "state"
    results: Path = REPO / "results"
    logs: Path = REPO / "var" / "demo"
    timeout: float = 900.0
    config: Path = REPO / "conf" / "demo.yaml"
    serve_port: int | None = 8000  # the recommendations API's port; None: a free one


def demo_settings(options: DemoOptions) -> AppConfig:
    """The demo's settings file (the job reads the same), with the demo's paths."""
    overrides = [f"paths.state={options.state}", f"paths.results={options.results}"]
    if options.threshold is not None:
        overrides.append(f"training.threshold={options.threshold}")
    return load_config(options.config, overrides)


@dataclass(frozen=True)
class DemoResult:
    runs_before: int
    runs_after: int
    latest: Path
    report: Path
    total_valid: int
    total_quarantined: int
    served: dict  # one answer of the recommendations API for a user of the latest run
    api: str  # the API's address while the demo ran


def _start_job(options: DemoOptions, bootstrap: str, log_file: Path) -> subprocess.Popen:
    env = {**os.environ, "SPARK_MASTER_URL": "local[2]", "RECSYS_CONFIG": str(options.config)}
    overrides = [
        f"kafka.bootstrap_servers={bootstrap}",
        f"paths.state={options.state}",
        f"paths.results={options.results}",
    ]
    if options.threshold is not None:
        overrides.append(f"training.threshold={options.threshold}")
    args = [str(REPO / "scripts" / "submit")]
    for override in overrides:
        args += ["--set", override]
    log.info("submitting the streaming job (log: %s)", log_file)
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log_file.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _start_producer(options: DemoOptions, bootstrap: str, round_no: int,
                    log_file: Path) -> subprocess.Popen:
    args = [PYTHON, "-m", "producer", "--config", str(options.config),
            "--bootstrap-servers", bootstrap, "--events", str(options.events),
            "--rate", str(options.rate),
            "--users", str(options.users), "--products", str(options.products),
            "--seed", str(round_no), "--id-prefix", f"demo{round_no}-",
            "--bad-ratio", str(options.bad_ratio), "--progress", "off"]
    log.info("streaming %d simulated sales at %d/s", options.events, options.rate)
    return subprocess.Popen(args, cwd=REPO, stdout=log_file.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _start_server(options: DemoOptions, bootstrap: str, port: int,
                  log_file: Path) -> subprocess.Popen:
    args = [str(REPO / "scripts" / "serve"), "--config", str(options.config),
            "--results", str(options.results), "--bootstrap-servers", bootstrap,
            "--port", str(port)]
    log.info("starting the recommendations API on 127.0.0.1:%d (log: %s)", port, log_file)
    return subprocess.Popen(args, cwd=REPO, stdout=log_file.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _get_json(url: str) -> dict | None:
    """The JSON body of a GET on loopback, or None if it does not answer 200 (yet)."""
    try:
        with _LOOPBACK.open(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def ask_the_api(api: str, results: Path, server: subprocess.Popen, timeout: float) -> dict:
    """Wait until the API serves the latest run, then ask it for a user of that run. `latest`
    is read again at every try: a run renamed into runs/ is counted before the pointer moves."""

    def ready() -> dict | None:
        if server.poll() is not None:
            raise InfraError(f"the recommendations API exited with {server.returncode}")
        answer = _get_json(f"{api}/runs/latest")
        _, manifest = latest_manifest(results)
        return answer if answer and answer.get("run_id") == manifest.run_id else None

    serving = wait_until(ready, timeout, "the recommendations API to serve the latest run")
    edges = (results / RUNS_DIR / serving["run_id"] / EDGES_CSV).open(encoding="utf-8")
    user = next(csv.DictReader(edges))[EDGE_SRC].removeprefix(USER_VERTEX_PREFIX)
    answer = _get_json(f"{api}/recommendations/{urllib.parse.quote(user, safe='')}?n=5")
    if answer is None:
        raise InfraError(f"the recommendations API gave no answer for user {user!r}")
    return answer


def _stop(process: subprocess.Popen | None, name: str, timeout: float = 120) -> int | None:
    """SIGTERM (the job finishes its batch), then SIGKILL after `timeout`."""
    if process is None or process.poll() is not None:
        return None if process is None else process.returncode
    log.info("stopping the %s", name)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=30)


def _render(options: DemoOptions) -> Path:
    out = subprocess.run(
        [PYTHON, "-m", "visualize", "--results", str(options.results), "--run", "latest"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    if out.returncode != 0:
        raise InfraError(f"rendering the report failed: {out.stderr.strip()[-2000:]}")
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    return Path(lines[-1].strip())  # the CLI prints the path of index.html


def finished_runs(results: Path) -> list[str]:
    """Ids of the training runs the job has finished: published and rejected, oldest first."""
    ids = []
    for folder in (results / RUNS_DIR, results / REJECTED_DIR):
        if folder.is_dir():
            ids += [p.name for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name)]
    return sorted(ids)


def quarantined_records(results: Path) -> int:
    """Records in the published quarantine (row counts from the Parquet footers)."""
    files = (results / QUARANTINE_DIR).glob("batch_id=*/*.parquet")
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def latest_manifest(results: Path) -> tuple[Path, Manifest]:
    """The run the `latest` pointer names, and its manifest."""
    run_id = parse_latest((results / LATEST).read_text())
    run = results / RUNS_DIR / str(run_id)
    return run, Manifest.from_json((run / MANIFEST).read_text(), str(run / MANIFEST))


def _job_error(log_file: Path) -> str:
    """The job's last ERROR line (its one-line reason for stopping), or where to look."""
    text = log_file.read_text(errors="replace")
    lines = [line for line in text.splitlines() if " ERROR " in line]
    return lines[-1].split(": ", 1)[-1] if lines else f"see {log_file}"


def run_demo(options: DemoOptions) -> DemoResult:
    """Run the pipeline until two more runs are published; stop what was started."""
    options.logs.mkdir(parents=True, exist_ok=True)
    kafka = LocalKafka(home=options.kafka_home, brokers=1, base_port=options.kafka_port)
    started_kafka = not kafka.is_running()
    job = producer = server = None
    settings = demo_settings(options)
    runs_before = len(finished_runs(options.results))
    port = options.serve_port or free_ports(1)[0]
    api = f"http://127.0.0.1:{port}"
    try:
        bootstrap = kafka.start(timeout=180)
        kafka.create_topic(settings.kafka.topic, partitions=options.partitions)
        job = _start_job(options, bootstrap, options.logs / "job.log")
        producer = _start_producer(options, bootstrap, runs_before // 2 + 1,
                                   options.logs / "producer.log")
        target = runs_before + 2
        last_report = 0.0

        def published() -> bool:
            nonlocal last_report
            if job.poll() is not None:
                raise InfraError(f"the streaming job exited with {job.returncode}: "
                                 f"{_job_error(options.logs / 'job.log')}")
            runs = len(finished_runs(options.results))
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                log.info("progress: %d of %d training runs finished", runs, target)
            return runs >= target

        wait_until(published, options.timeout, f"{target} training runs", interval=0.5)
        if producer.wait(timeout=options.timeout) != 0:
            raise InfraError(f"the producer failed; see {options.logs / 'producer.log'}")
        server = _start_server(options, bootstrap, port, options.logs / "serve.log")
        served = ask_the_api(api, options.results, server, timeout=120)
    finally:
        _stop(server, "recommendations API")
        _stop(producer, "producer")
        _stop(job, "streaming job")
        if started_kafka:
            kafka.stop()
    report = _render(options)
    latest, manifest = latest_manifest(options.results)
    return DemoResult(runs_before, len(finished_runs(options.results)), latest, report,
                      manifest.events.total_valid, quarantined_records(options.results), served,
                      api)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=DemoOptions.events,
                        help="simulated sales to stream (default %(default)s)")
    parser.add_argument("--threshold", type=int,
                        help="new events per training run (default: training.threshold of "
                        "conf/demo.yaml)")
    parser.add_argument("--rate", type=int, default=DemoOptions.rate,
                        help="sales per second (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    options = DemoOptions(events=args.events, threshold=args.threshold, rate=args.rate)
    try:
        threshold = demo_settings(options).training.threshold
        if args.events < 2 * threshold:
            parser.error(f"--events must be at least twice the threshold ({threshold}) to "
                         "publish two runs")
        result = run_demo(options)
    except InvalidConfigError as exc:
        log.error("%s", exc)
        return 2
    except (InfraError, TimeoutError) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; every process the demo started was stopped")
        return 130
    sys.stdout.write(
        f"\nDemo done: {result.runs_after - result.runs_before} new training runs "
        f"({result.runs_after} in all), {result.total_valid:,} events stored, "
        f"{result.total_quarantined:,} quarantined.\n"
        f"  report:  {result.report}\n"
        f"  run:     {result.latest} (vertices.csv, edges.csv, metrics.json, manifest.json)\n"
        f"  runs:    {REPO / 'results' / 'runs'}\n"
        f"  API:     {result.api}/recommendations/{result.served.get('user_id')} answered "
        f"(stopped with the demo; start it with scripts/serve):\n"
        f"           {json.dumps(result.served, ensure_ascii=False)[:300]}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
