"""Benchmark of the visualizer (issue 6): render a 50k users x 10 recommendations run.

Generates the run into a temporary results dir (not timed), then times a plain pandas read of
its CSVs (the reference) and the full render, step by step, in-process and through the CLI.
Target: the full render under 30 s. ``--write`` records the result in benchmarks/RESULTS.md
under "## Visualizer (issue 6)", leaving the other sections alone.

    .venv/bin/python -m benchmarks.bench_visualize [--users 50000] [--write] [--keep DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tests.visualize_fixtures import write_large_run
from visualize.report import render_run

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
RESULTS_MD = REPO / "benchmarks" / "RESULTS.md"
HEADING = "## Visualizer (issue 6)"
TARGET_SECONDS = 30.0


def reference_read(run_dir: Path) -> float:
    """Seconds pandas takes just to read vertices.csv and edges.csv, with no options."""
    started = time.perf_counter()
    pd.read_csv(run_dir / "vertices.csv")
    pd.read_csv(run_dir / "edges.csv")
    return time.perf_counter() - started


def cli_seconds(results: Path, out: Path) -> float:
    """Wall time of ``python -m visualize`` in a fresh interpreter (imports included)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "visualize", "--results", str(results), "--out", str(out),
         "--log-level", "WARNING"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL, timeout=600,
    )
    return time.perf_counter() - started


def write_section(text: str) -> None:
    """Replace (or append) this benchmark's section of benchmarks/RESULTS.md."""
    current = RESULTS_MD.read_text(encoding="utf-8") if RESULTS_MD.exists() else "# Benchmarks\n"
    lines = current.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    if start is None:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        tail = "".join(lines[end:])
        updated = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    RESULTS_MD.write_text(updated, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when the render misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--recs", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md")
    parser.add_argument("--keep", type=Path, default=None,
                        help="also copy the rendered report here (to look at the PNGs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-visualize-") as tmp:
        results = Path(tmp) / "results"
        started = time.perf_counter()
        run = write_large_run(results, n_users=args.users, n_products=args.products,
                              recs_per_user=args.recs)
        generate = time.perf_counter() - started
        reference = reference_read(run.path)
        rendered = render_run(results)
        cli = cli_seconds(results, Path(tmp) / "cli-report")
        if args.keep:
            shutil.copytree(rendered.out_dir, args.keep, dirs_exist_ok=True)

    steps = rendered.seconds
    total = steps["total"]
    load = os.getloadavg()[0]
    command = "`.venv/bin/python -m benchmarks.bench_visualize" + (
        f" --users {args.users}" if args.users != 50_000 else "") + " --write`"
    verdict = "PASS" if total < TARGET_SECONDS and cli < TARGET_SECONDS else "FAIL"
    rows = [
        ("reference: pandas read_csv of vertices + edges", reference),
        *((f"render: {name}", seconds) for name, seconds in steps.items() if name != "total"),
        ("render total (in-process)", total),
        ("CLI end to end (fresh interpreter, imports included)", cli),
    ]
    table = "\n".join(f"| {name} | {seconds:.2f} |" for name, seconds in rows)
    text = (
        f"{HEADING}\n\n"
        f"Run: {args.users:,} users x {args.recs} recommendations = {len(run.edges):,} edges, "
        f"{args.products:,} products (synthetic, Zipf-like popularity; generated in "
        f"{generate:.1f} s, not timed). Command: {command}. "
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores shared "
        f"with other work (1-min load average {load:.1f}).\n\n"
        "| step | seconds |\n| --- | ---: |\n"
        f"{table}\n\n"
        f"Render total / reference read: **{total / reference:.1f}x**; target total < "
        f"{TARGET_SECONDS:.0f} s: **{verdict}** (in-process {total:.1f} s, CLI {cli:.1f} s). "
        f"Graph drawn: {rendered.graph.products_drawn} of {rendered.graph.total_products:,} "
        f"products, {rendered.graph.users_drawn} of {rendered.graph.total_users:,} users, "
        f"{rendered.graph.edges_drawn} of {rendered.graph.total_edges:,} edges.\n"
    )
    sys.stdout.write(text)
    if args.write:
        write_section(text)
        sys.stdout.write(f"\nwritten to {RESULTS_MD}\n")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
