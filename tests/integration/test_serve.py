"""The recommendations API as a real server process (scripts/serve's `python -m serve`) on a free
port, called with a real HTTP client, folding in purchases from the real broker: every
endpoint, hot reload under load, fold-in within 2 s and its quality on planted data, and a
malformed record that is counted and skipped."""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from infra.ports import free_ports
from infra.processes import tail
from infra.wait import wait_until
from recsys_contract.config import load_config
from tests.kafka_helpers import create_topic, send_all
from tests.serve_fixtures import (
    Factors,
    manifest_for,
    publish_half_written,
    publish_run,
    random_factors,
    run_id_for,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60  # a contended 2-core machine; the server starts in a few seconds


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def json(self, path: str) -> dict:
        response = self.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 if absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", re.M)
        for found_labels, value in pattern.findall(self.get("/metrics").text):
            if ",".join(sorted(found_labels.split(","))) == wanted or (
                not labels and not found_labels
            ):
                return float(value)
        return 0.0


@contextmanager
def serve(tmp: Path, results: Path, *, bootstrap: str | None = None, topic: str = "sales",
          extra: tuple[str, ...] = ()) -> Iterator[Server]:
    """A server process on a free port, stopped (and killed if need be) whatever happens."""
    (port,) = free_ports(1)
    args = [sys.executable, "-m", "serve", "--results", str(results), "--port", str(port),
            "--set", "serve.reload_poll_seconds=0.2", "--topic", topic, *extra]
    args += ["--bootstrap-servers", bootstrap] if bootstrap else ["--no-fold-in"]
    log = tmp / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}): {tail(log)}")
            try:
                return server.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, START_TIMEOUT, "the API server to answer /health")
        yield server
    finally:
        server.client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def wait_for_run(server: Server, run_id: str, timeout: float = 30) -> None:
    wait_until(lambda: server.get("/ready").json().get("run_id") == run_id, timeout,
               f"the server to serve run {run_id}")


def purchase(user: str, product: str, quantity: int = 1) -> dict:
    return {"user_id": user, "product_id": product, "quantity": quantity,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# --- every endpoint, fold-in within 2 s, a malformed record --------------------------------------

TOPIC = "serve-endpoints"
ODD_USER = "ü ser/1?#%"  # any Unicode, URL-encoded by the client, never interpreted


@pytest.fixture(scope="module")
def endpoints(kafka, tmp_path_factory) -> Iterator[tuple[Server, Factors, str]]:
    tmp = tmp_path_factory.mktemp("serve-endpoints")
    create_topic(kafka.bootstrap_servers, TOPIC, partitions=2)
    factors = random_factors(60, 40, seed=5)
    factors = Factors([ODD_USER, *factors.user_ids[1:]], factors.users, factors.product_ids,
                      factors.items, factors.purchases, factors.popular)
    run_id = run_id_for(1)
    # The run names its cut: offset 0 of both partitions (the topic was empty when it was cut).
    manifest = manifest_for(run_id, 1, cut={"0": 0, "1": 0}, topic=TOPIC)
    publish_run(tmp / "results", 1, factors, manifest=manifest)
    with serve(tmp, tmp / "results", bootstrap=kafka.bootstrap_servers, topic=TOPIC) as server:
        wait_for_run(server, run_id)
        yield server, factors, run_id


def test_a_known_user_gets_the_models_top_n_without_what_they_bought(endpoints) -> None:
    server, factors, run_id = endpoints
    body = server.json("/recommendations/u7?n=5")
    bought = {p for u, p, _ in factors.purchases if u == "u7"}
    scores = factors.items @ factors.users[7]
    expected = [factors.product_ids[i] for i in sorted(
        (i for i in range(40) if factors.product_ids[i] not in bought), key=lambda i: -scores[i])
    ][:5]
    assert (body["run_id"], body["source"], [i["product_id"] for i in body["items"]]) == (
        run_id, "model", expected)


def test_an_id_is_any_text_url_decoded(endpoints) -> None:
    server, _, _ = endpoints
    body = server.json(f"/recommendations/{quote(ODD_USER, safe='')}?n=3")
    assert (body["user_id"], body["source"]) == (ODD_USER, "model")


def test_an_unknown_user_gets_the_popular_list(endpoints) -> None:
    server, factors, _ = endpoints
    body = server.json("/recommendations/never-seen?n=4")
    assert (body["source"], [i["product_id"] for i in body["items"]]) == (
        "popular", [p for p, _ in factors.popular[:4]])


@pytest.mark.parametrize("path", ["/recommendations/u1?n=0", "/recommendations/u1?n=101",
                                  "/recommendations/u1?n=ten", "/similar/p1?n=-1",
                                  "/popular?n=1000"])
def test_n_out_of_range_is_a_400_naming_n(endpoints, path: str) -> None:
    response = endpoints[0].get(path)
    assert (response.status_code, response.json()["detail"].startswith("n: ")) == (400, True)


def test_similar_products_and_an_unknown_product(endpoints) -> None:
    server, _, run_id = endpoints
    similar = server.json("/similar/p3?n=6")
    unknown = server.get("/similar/no-such-product")
    ids = [i["product_id"] for i in similar["items"]]
    assert (similar["run_id"], len(ids), "p3" in ids, unknown.status_code) == (
        run_id, 6, False, 404)


def test_popular_runs_latest_health_ready(endpoints) -> None:
    server, factors, run_id = endpoints
    popular = server.json("/popular?n=3")
    latest = server.json("/runs/latest")
    assert ([i["product_id"] for i in popular["items"]], latest["run_id"],
            latest["metrics"]["accepted"], server.json("/health"), server.json("/ready")) == (
        [p for p, _ in factors.popular[:3]], run_id, True, {"status": "ok"},
        {"ready": True, "run_id": run_id})


def test_metrics_count_requests_per_route_template_never_per_id(endpoints) -> None:
    server, _, _ = endpoints
    server.get("/recommendations/some-user-id-123")
    text = server.get("/metrics").text
    route = 'recsys_serve_requests_total{method="GET",route="/recommendations/{user_id}"'
    assert (route in text, "some-user-id-123" in text,
            "recsys_serve_request_duration_seconds_bucket" in text,
            f'recsys_serve_run_info{{run_id="{run_id_for(1)}"}} 1.0' in text) == (
        True, False, True, True)


def test_openapi_documents_every_endpoint(endpoints) -> None:
    paths = set(endpoints[0].json("/openapi.json")["paths"])
    assert paths >= {"/recommendations/{user_id}", "/similar/{product_id}", "/popular",
                     "/runs/latest", "/health", "/ready", "/metrics"}


def test_a_purchase_by_an_unseen_user_is_folded_in_within_2_s(kafka, endpoints) -> None:
    server, factors, _ = endpoints
    product = factors.popular[0][0]  # the most popular product: first in the popular list
    send_all(kafka.bootstrap_servers, TOPIC, [purchase("fresh-user", product)], keys=["x"])
    sent = time.monotonic()
    body = wait_until(
        lambda: (b := server.json("/recommendations/fresh-user?n=10"))["source"] == "fold_in"
        and b, 10, "the purchase to be folded in", interval=0.02)
    took = time.monotonic() - sent
    items = [i["product_id"] for i in body["items"]]
    popular = [p for p, _ in factors.popular[:10]]
    assert (took < 2.0, product in items, items != popular, len(items)) == (True, False, True, 10)


def test_a_malformed_record_is_counted_and_the_consumer_goes_on(kafka, endpoints) -> None:
    server, factors, _ = endpoints
    before = server.metric("recsys_serve_fold_in_malformed_total", reason="malformed_json")
    send_all(kafka.bootstrap_servers, TOPIC,
             [b'{"user_id": "x", ', purchase("after-bad", factors.product_ids[2])])
    wait_until(lambda: server.json("/recommendations/after-bad")["source"] == "fold_in", 10,
               "the purchase after the malformed record to be folded in")
    after = server.metric("recsys_serve_fold_in_malformed_total", reason="malformed_json")
    assert after - before == 1


# --- hot reload under load ------------------------------------------------------------------------


class Load:
    """Threads that send requests without pause and record (status or error, run id)."""

    def __init__(self, url: str, users: list[str], products: list[str], threads: int = 2):
        self.url, self.users, self.products = url, users, products
        self.results: list[tuple[str, str | None, float]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                path = rng.choice([
                    f"/recommendations/{rng.choice(self.users)}?n=10",
                    f"/similar/{rng.choice(self.products)}?n=5",
                    "/popular?n=5",
                ])
                try:
                    response = client.get(path)
                    outcome = str(response.status_code)
                    run_id = response.json().get("run_id") if outcome == "200" else None
                except (httpx.HTTPError, ValueError) as exc:
                    outcome, run_id = type(exc).__name__, None
                self.results.append((outcome, run_id, time.monotonic()))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def first_seen(self, run_id: str, since: int) -> float | None:
        return next((t for _, r, t in self.results[since:] if r == run_id), None)


def attempts(server: Server) -> float:
    """Runs the server tried to load so far, whatever the outcome."""
    return sum(server.metric("recsys_serve_reloads_total", outcome=outcome)
               for outcome in ("loaded", "rejected", "invalid"))


def test_hot_reload_under_load_never_fails_a_request(kafka, tmp_path) -> None:
    topic = "serve-reload"
    create_topic(kafka.bootstrap_servers, topic, partitions=2)
    results = tmp_path / "results"

    def run(sequence: int) -> Factors:
        return random_factors(300, 120, seed=sequence)

    def publish(sequence: int) -> str:
        manifest = manifest_for(run_id_for(sequence), sequence, cut={"0": 0, "1": 0},
                                topic=topic)
        return publish_run(results, sequence, run(sequence), manifest=manifest)

    accepted = [publish(1)]
    users = [f"u{i}" for i in range(0, 300, 7)] + [f"stranger-{i}" for i in range(20)]
    products = [f"p{i}" for i in range(0, 120, 5)]
    switches: list[float] = []
    with serve(tmp_path, results, bootstrap=kafka.bootstrap_servers, topic=topic) as server:
        wait_for_run(server, accepted[0])
        send_all(kafka.bootstrap_servers, topic, [purchase("buyer", "p1"), b"not json"])
        with Load(server.url, users, products) as load:
            for sequence in range(2, 9):
                if sequence in (4, 6):  # `latest` moves to a rejected, then a half-written run
                    tried = attempts(server)
                    if sequence == 4:
                        publish_run(results, sequence, run(sequence), accepted=False)
                    else:
                        publish_half_written(results, sequence, run(sequence))
                    wait_until(lambda: attempts(server) > tried, 30,  # noqa: B023
                               f"the server to look at run {sequence}")
                    mark = len(load.results)
                    wait_until(lambda: len(load.results) > mark + 200, 30,  # noqa: B023
                               "answers after a refused run")
                    continue
                mark = len(load.results)
                moved = time.monotonic()
                accepted.append(publish(sequence))
                seen = wait_until(lambda: load.first_seen(accepted[-1], mark), 30,  # noqa: B023
                                  f"run {accepted[-1]} to be served")
                switches.append(seen - moved)
            mark = len(load.results)  # the load goes on a little after the last switch
            wait_until(lambda: len(load.results) > mark + 200, 30, "more answers")
        outcomes = {o for o, _, _ in load.results}
        served = {r for _, r, _ in load.results}
        assert (outcomes, served <= set(accepted), len(accepted), max(switches) < 5.0,
                len(load.results) > 500) == ({"200"}, True, 6, True, True), (
            switches, outcomes, len(load.results), tail(server.log))


# --- fold-in quality on planted data, with a run trained by Spark --------------------------------


def _ndcg(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, p in enumerate(ranked[:k]) if p in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def test_folded_in_lists_beat_the_popular_list_on_planted_data(spark, kafka, tmp_path) -> None:
    from spark_app.training import run_training
    from tests.training_data import events_df, planted_events

    topic = "serve-planted"
    create_topic(kafka.bootstrap_servers, topic, partitions=2)
    rows = sorted(planted_events(users=300, products=200, segments=5, events_per_user=16),
                  key=lambda r: int(r[0][2:]))  # generation order: e-<i>
    hidden = {f"u{u}" for u in range(250, 300)}
    train = [r for r in rows if r[1] not in hidden]
    cfg = load_config(overrides=[f"paths.results={tmp_path / 'results'}",
                                 f"paths.state={tmp_path / 'state'}", "als.rank=8"])
    counts = {"training_set": len(train), "total_valid": len(train),
              "new_since_last_run": len(train)}
    outcome = run_training(spark, events_df(spark, train), cfg, sequence=1, event_counts=counts)
    assert outcome.accepted, outcome.reason
    by_user: dict[str, list[str]] = {}
    for r in rows:
        if r[1] in hidden:
            by_user.setdefault(r[1], []).append(r[2])
    revealed = {u: ps[: len(ps) // 2] for u, ps in by_user.items()}
    held_out = {u: set(ps[len(ps) // 2:]) - set(revealed[u]) for u, ps in by_user.items()}
    with serve(tmp_path, tmp_path / "results", bootstrap=kafka.bootstrap_servers,
               topic=topic) as server:
        wait_for_run(server, outcome.run_id)
        # The run names no Kafka positions: the fold-in starts at the end of the topic. Probe
        # purchases until one is folded in, so that everything sent after it is read.
        probes = iter(range(10_000))

        def probe_seen() -> bool:
            user = f"probe-{next(probes)}"
            send_all(kafka.bootstrap_servers, topic, [purchase(user, "p1")])
            try:
                wait_until(lambda: server.json(f"/recommendations/{user}")["source"] == "fold_in",
                           3, "a probe purchase to be folded in", interval=0.05)
            except TimeoutError:
                return False
            return True

        wait_until(probe_seen, 60, "the speed layer to read the topic", interval=0)
        send_all(kafka.bootstrap_servers, topic,
                 [purchase(u, p) for u, ps in revealed.items() for p in ps])
        last = next(iter(reversed(revealed)))
        wait_until(lambda: server.json(f"/recommendations/{last}")["source"] == "fold_in", 30,
                   "the revealed purchases to be folded in")
        fold_in = [_ndcg([i["product_id"] for i in server.json(
            f"/recommendations/{u}?n=10")["items"]], held_out[u]) for u in sorted(held_out)]
        popular_ids = [i["product_id"] for i in server.json("/popular?n=100")["items"]]
    popular = [_ndcg([p for p in popular_ids if p not in revealed[u]], held_out[u])
               for u in sorted(held_out)]
    model_score, popular_score = sum(fold_in) / len(fold_in), sum(popular) / len(popular)
    assert model_score >= 2 * popular_score, (model_score, popular_score)

