"""Growth of the training cycle with events, users and products (issue 24), and the smallest
driver memory that completes each size.

    flock /tmp/recsys-bench.lock .venv/bin/python benchmarks/bench_growth.py
    flock /tmp/recsys-bench.lock .venv/bin/python benchmarks/bench_growth.py --min-memory

Not a test. Each size runs benchmarks/bench_training.py in a process of its own (a fresh JVM,
so that one size's heap and JIT do not carry into the next) with --strict: events read from
Parquet, the job's shuffle partitions and driver memory from conf/, the first cycle of a fresh
JVM, then one warm cycle, each against a bare fit of the run's own training split. Users and
products grow with events (default 50k x 10k at 1M, 250k x 50k at 5M, 500k x 100k at 10M), and
taste segments with products (Size.segments).
Prints, per size, the first and the warm cycle, the bare fit, the peak memory (JVM and all)
and the growth of each against the smallest size. Goal: the warm cycle at 10M <= 12x the one
at 1M.

With --min-memory it instead tries, per size, each driver memory of --memory-ladder from the
smallest up (first cycle only, no warm cycle) until one completes within --timeout: that is the
smallest driver memory of the ladder that completes the size. Goal: 10M with at most 6 GiB.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench_growth")

DEFAULT_SIZES = "1000000:50000:10000,5000000:250000:50000,10000000:500000:100000"


@dataclass(frozen=True)
class Size:
    events: int
    users: int
    products: int

    @property
    def segments(self) -> int:
        """Taste segments that grow with products: each segment keeps the 1M size's 1,250
        products (bench_training's default 8 segments of 10k), so that users' tastes are as
        learnable at every size and every run is accepted and does all its stages."""
        return max(1, round(8 * self.products / 10_000))

    @classmethod
    def parse(cls, text: str) -> Size:
        try:
            events, users, products = (int(part) for part in text.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"size {text!r}: expected EVENTS:USERS:PRODUCTS, e.g. 1000000:50000:10000"
            ) from None
        return cls(events, users, products)

    @property
    def label(self) -> str:
        return f"{self.events / 1e6:g}M events, {self.users // 1000}k x {self.products // 1000}k"


@dataclass(frozen=True)
class Attempt:
    """One bench_training run: its figures, or why it did not complete."""

    size: Size
    driver_memory: str | None
    seconds: float
    figures: dict | None
    failure: str | None = None


def run_size(size: Size, driver_memory: str | None, warm_cycles: int, workdir: Path,
             timeout: float) -> Attempt:
    """bench_training --strict on `size` in a process group of its own, killed at `timeout`."""
    out = workdir / f"{size.events}-{driver_memory or 'default'}-w{warm_cycles}"
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, str(REPO / "benchmarks" / "bench_training.py"), "--strict",
        "--skip-implicit", "--no-paired-fits", f"--warm-cycles={warm_cycles}",
        f"--events={size.events}", f"--users={size.users}", f"--products={size.products}",
        f"--segments={size.segments}",
        f"--workdir={out / 'work'}", f"--json={out / 'figures.json'}",
        *([f"--driver-memory={driver_memory}"] if driver_memory else []),
    ]
    log.info("%s, driver memory %s: %s", size.label, driver_memory or "the job's", out)
    started = time.perf_counter()
    with open(out / "log.txt", "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the JVM and Python workers too
            process.wait()
            code = None
    seconds = round(time.perf_counter() - started, 1)
    if code == 0:
        return Attempt(size, driver_memory, seconds, json.loads((out / "figures.json").read_text()))
    text = (out / "log.txt").read_text(errors="replace")
    why = ("OutOfMemoryError" if "OutOfMemoryError" in text
           else f"killed after {timeout:.0f} s" if code is None else f"exit {code}")
    log.warning("%s, driver memory %s did not complete: %s (log: %s)", size.label,
                driver_memory or "the job's", why, out / "log.txt")
    return Attempt(size, driver_memory, seconds, None, why)


def summary(attempt: Attempt) -> dict:
    """The figures one size is judged by."""
    figures = attempt.figures or {}
    warm = figures.get("warm_cycles") or [{}]
    return {
        "size": attempt.size.label,
        "pairs": figures.get("pairs"),
        "driver_memory": (figures.get("spark_conf") or {}).get("spark.driver.memory"),
        "first_cycle_s": figures.get("cycle_stages", {}).get("total"),
        "warm_cycle_s": warm[0].get("stages", {}).get("total"),
        "bare_fit_s": figures.get("bare_fit_used_for_ratios"),
        "accepted": figures.get("accepted"),
        "warm_stages_s": warm[0].get("stages"),
        "peak_rss_mib": figures.get("peak_rss_mib"),
        "wall_s": attempt.seconds,
    }


def report(rows: list[dict]) -> None:
    base = rows[0]
    for row in rows:
        growth = {
            key: round(row[key] / base[key], 2)
            for key in ("first_cycle_s", "warm_cycle_s", "bare_fit_s")
            if row.get(key) and base.get(key)
        }
        peak = row["peak_rss_mib"] or {}
        print(
            f"{row['size']} ({row['pairs']} pairs, driver {row['driver_memory']}): first cycle "
            f"{row['first_cycle_s']} s, warm cycle {row['warm_cycle_s']} s, bare fit "
            f"{row['bare_fit_s']} s; peak RSS JVM {peak.get('jvm')} MiB, all "
            f"{peak.get('total')} MiB; against {base['size']}: first x"
            f"{growth.get('first_cycle_s')}, warm x{growth.get('warm_cycle_s')}, bare fit "
            f"x{growth.get('bare_fit_s')}"
            + ("" if row["accepted"] else " (run REJECTED: the later stages did not run)")
        )


def smallest_memory(size: Size, ladder: list[str], workdir: Path, timeout: float) -> dict:
    """The first driver memory of `ladder` (smallest first) that completes a first cycle."""
    tried = []
    for memory in ladder:
        attempt = run_size(size, memory, 0, workdir, timeout)
        tried.append({"driver_memory": memory, "seconds": attempt.seconds,
                      "failure": attempt.failure,
                      "peak_rss_mib": (attempt.figures or {}).get("peak_rss_mib")})
        if attempt.failure is None:
            print(f"{size.label}: smallest driver memory that completes: {memory} "
                  f"(first cycle {summary(attempt)['first_cycle_s']} s; tried {tried})")
            return {"size": size.label, "smallest": memory, "tried": tried}
    print(f"{size.label}: no driver memory of {ladder} completes (tried {tried})")
    return {"size": size.label, "smallest": None, "tried": tried}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"EVENTS:USERS:PRODUCTS,... smallest first (default {DEFAULT_SIZES})")
    parser.add_argument("--warm-cycles", type=int, default=1,
                        help="warm cycles after the first, per size (default 1)")
    parser.add_argument("--min-memory", action="store_true",
                        help="instead, find the smallest driver memory of --memory-ladder per size")
    parser.add_argument("--memory-ladder", default="1g,2g,3g,4g,6g",
                        help="driver memories to try, smallest first (default 1g,2g,3g,4g,6g)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds before a size's run counts as not completing (default 3600)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-growth"))
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sizes = [Size.parse(text) for text in args.sizes.split(",")]

    if args.min_memory:
        memory = [smallest_memory(size, args.memory_ladder.split(","), args.workdir,
                                  args.timeout) for size in sizes]
        if args.json:
            args.json.write_text(json.dumps({"smallest_memory": memory}, indent=2))
        return 0 if all(found["smallest"] for found in memory) else 1
    rows = []
    for size in sizes:
        attempt = run_size(size, None, args.warm_cycles, args.workdir, args.timeout)
        if attempt.failure is not None:
            print(f"{size.label} did not complete at the job's driver memory: {attempt.failure}")
            continue
        rows.append(summary(attempt))
        report(rows)
    if rows:
        print("growth, strict figures, one fresh JVM per size:")
        report(rows)
    if args.json:
        args.json.write_text(json.dumps({"sizes": rows}, indent=2))
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
