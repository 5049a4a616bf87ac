"""API server benchmark (issue 22): a run of 50,000 users x 10,000 products, `wrk` on the same
machine against the real server process (`python -m serve`, fold-in off: no broker needed).

- throughput of GET /recommendations (random known users, and unknown ones who get the
  popular list) against GET /health of the same server (a constant body: the framework's
  floor; asked with a random query string that it ignores, so that the load generator does
  the same work for both), in alternating rounds; goal: >= 0.7x the floor;
- p99 latency of /recommendations and /similar at a fixed rate of 1,000 requests/s (wrk with
  a per-connection delay); goals: <= 20 ms and <= 30 ms;
- a second run of the same size published while /recommendations runs at 1,000 requests/s:
  time from `latest` moving to the first answer from the new run (goal <= 5 s), with 0 failed
  requests;
- the server's peak resident memory over the whole benchmark (goal <= 1 GiB).

Run it alone on the machine: flock /tmp/recsys-bench.lock .venv/bin/python -m benchmarks.bench_serve
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from infra.ports import free_ports
from infra.wait import wait_until
from tests.serve_fixtures import point_latest, run_id_for, write_large_run

REPO = Path(__file__).resolve().parent.parent
USERS, PRODUCTS, RANK = 50_000, 10_000, 10

LUA = r"""
local kind, users, products, unknown, delay_ms = "%(kind)s", %(users)d, %(products)d,
  %(unknown)f, %(delay_ms)d
local seed = 0
function setup(thread) seed = seed + 1; thread:set("seed", seed) end
function init(args) math.randomseed(os.time() * 1000 + (seed or 0)) end
function request()
  -- the floor's path is random too, so that wrk does the same work for both
  local path = "/health?u=" .. math.random(0, users - 1) .. "&n=10"
  if kind == "recommendations" then
    if math.random() < unknown then
      path = "/recommendations/new-" .. math.random(1, 1000000000) .. "?n=10"
    else
      path = "/recommendations/u" .. math.random(0, users - 1) .. "?n=10"
    end
  elseif kind == "similar" then
    path = "/similar/p" .. math.random(0, products - 1) .. "?n=10"
  end
  return wrk.format("GET", path)
end
if delay_ms > 0 then function delay() return delay_ms end end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "seconds": %%f, "errors": %%d, "p50_ms": %%f, "p99_ms": %%f, ' ..
    '"max_ms": %%f}\n', summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def wrk(url: str, kind: str, *, seconds: int, connections: int, delay_ms: int = 0,
        unknown: float = 0.1, scratch: Path) -> dict:
    """One wrk run; its summary (requests/s, failed requests, latency percentiles in ms)."""
    script = scratch / f"{kind}-{delay_ms}.lua"
    script.write_text(LUA % {"kind": kind, "users": USERS, "products": PRODUCTS,
                             "unknown": unknown, "delay_ms": delay_ms})
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s",
         str(script), url], capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["rate"] = summary["requests"] / summary["seconds"]
    return summary


class PeakMemory(threading.Thread):
    """Samples a process's resident memory every 50 ms; `peak` in bytes."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating A/B rounds")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (max rate)")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    results = scratch / "results"
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    server = None
    log = (scratch / "serve.log").open("wb")
    try:
        started = time.perf_counter()
        first = run_id_for(1)
        write_large_run(results / "runs" / first, first, 1, users=USERS, products=PRODUCTS,
                        rank=RANK, seed=1)
        point_latest(results, first)
        second = run_id_for(2)  # written now, published during the load
        write_large_run(results / f".tmp-{second}", second, 2, users=USERS, products=PRODUCTS,
                        rank=RANK, seed=2)
        print(f"two runs of {USERS:,} users x {PRODUCTS:,} products (rank {RANK}, ~20 "
              f"purchases per user) written in {time.perf_counter() - started:.1f} s; "
              f"1-min load average {os.getloadavg()[0]:.1f} (2 cores)")
        server = subprocess.Popen(
            [sys.executable, "-m", "serve", "--results", str(results), "--port", str(port),
             "--no-fold-in", "--set", "serve.reload_poll_seconds=0.2", "--log-level", "WARNING"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        client = httpx.Client(base_url=url, timeout=10)

        def ready_run() -> str | None:
            try:
                return client.get("/ready").json().get("run_id")
            except httpx.TransportError:
                return None

        def gauge(name: str) -> float:
            return next((float(line.split()[-1]) for line in client.get("/metrics").text
                         .splitlines() if line.startswith(f"{name} ")), float("nan"))

        wait_until(lambda: ready_run() == first, 120, "the server to load the first run")
        # Every user's list ranked ahead (serve.rank_ahead_n) before the throughput is measured:
        # the steady state; the time it takes is printed, and measured under load at the switch.
        wait_until(lambda: gauge("recsys_serve_ranked_ahead_users") == USERS, 300,
                   "the server to rank every user ahead of requests", interval=0.1)
        ahead_idle = gauge("recsys_serve_rank_ahead_duration_seconds")
        print(f"   every user's top 10 ranked ahead of requests in {ahead_idle:.1f} s (idle)")
        memory = PeakMemory(server.pid)
        memory.start()
        wrk(url, "recommendations", seconds=3, connections=4, scratch=scratch)  # warm-up

        print(f"\n1. throughput, wrk -t1 -c{args.connections} -d{args.seconds}s, alternating:")
        ratios, floors, recs = [], [], []
        for round_ in range(args.rounds):
            order = ("health", "recommendations") if round_ % 2 == 0 else (
                "recommendations", "health")
            got = {kind: wrk(url, kind, seconds=args.seconds, connections=args.connections,
                             scratch=scratch) for kind in order}
            floors.append(got["health"]["rate"])
            recs.append(got["recommendations"]["rate"])
            ratios.append(recs[-1] / floors[-1])
            failed = got["health"]["errors"] + got["recommendations"]["errors"]
            print(f"   round {round_ + 1}: /health {floors[-1]:,.0f}/s, /recommendations "
                  f"{recs[-1]:,.0f}/s, ratio {ratios[-1]:.2f}, failed {failed}")
        print(f"   floor {spread(floors)}/s; recommendations {spread(recs)}/s; "
              f"ratio {spread(ratios)} (goal >= 0.7)")

        print("\n2. latency at 1,000 requests/s (wrk -t1 -c20, 19 ms between a connection's "
              "requests), alternating:")
        p99 = {"recommendations": [], "similar": []}
        for round_ in range(2):
            for kind in ("recommendations", "similar") if round_ == 0 else (
                    "similar", "recommendations"):
                got = wrk(url, kind, seconds=15, connections=20, delay_ms=19, scratch=scratch)
                p99[kind].append(got["p99_ms"])
                print(f"   /{kind}: {got['rate']:,.0f}/s, p50 {got['p50_ms']:.2f} ms, p99 "
                      f"{got['p99_ms']:.2f} ms, max {got['max_ms']:.1f} ms, failed "
                      f"{got['errors']}")
        print(f"   p99 /recommendations {spread(p99['recommendations'])} ms (goal <= 20), "
              f"/similar {spread(p99['similar'])} ms (goal <= 30)")

        print("\n3. a new run of the same size published under 1,000 requests/s:")
        load: dict = {}
        under_load = threading.Thread(target=lambda: load.update(wrk(
            url, "recommendations", seconds=20, connections=20, delay_ms=19, scratch=scratch)))
        under_load.start()
        time.sleep(5)  # the load runs a while before the switch (this is the benchmark's clock)
        os.rename(results / f".tmp-{second}", results / "runs" / second)
        moved = time.perf_counter()
        point_latest(results, second)
        wait_until(lambda: ready_run() == second, 60, "the switch to the second run",
                   interval=0.01)
        switch = time.perf_counter() - moved
        under_load.join()
        reload_gauge = gauge("recsys_serve_reload_duration_seconds")
        print(f"   switched {switch:.2f} s after latest moved (goal <= 5; of which loading and "
              f"building {reload_gauge:.2f} s); during the load: {load['rate']:,.0f}/s, p99 "
              f"{load['p99_ms']:.2f} ms, max {load['max_ms']:.1f} ms, failed {load['errors']} "
              f"(goal 0)")
        wait_until(lambda: gauge("recsys_serve_rank_ahead_duration_seconds") != ahead_idle
                   and gauge("recsys_serve_ranked_ahead_users") == USERS, 300,
                   "the second run's ranking ahead", interval=0.1)
        print(f"   the second run's users ranked ahead in "
              f"{gauge('recsys_serve_rank_ahead_duration_seconds'):.1f} s, under the load")
        memory.stop.set()
        memory.join()
        print(f"\n4. the server's peak resident memory: {memory.peak / 2**20:,.0f} MiB "
              f"(goal <= 1024; two runs loaded during the switch)")
        print(f"\n1-min load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(15)
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
