"""Benchmark of what model selection costs a training run (issue 23): the same cycle on the
same events in one Spark session, with selection (selection.every_n_runs=1, the default grid)
and without (every_n_runs=0, als.* as set), alternated A B B A ... so that a machine that
slows down for a while affects both alike.

Not a test. Prints each cycle's total and `select` stage, the median ratio with selection to
without and the spread of the per-pair ratios, and the accept figure each reached.

    flock /tmp/recsys-bench.lock .venv/bin/python benchmarks/bench_selection.py
    flock /tmp/recsys-bench.lock .venv/bin/python benchmarks/bench_selection.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from benchmarks.bench_training import local_dir  # noqa: E402
from spark_app.training.synthetic import synthetic_events  # noqa: E402

log = logging.getLogger("bench_selection")
WITH, WITHOUT = "with_selection", "without_selection"


def order(pairs: int) -> list[str]:
    """A B B A A B ...: each pair of cycles alternates which one goes first."""
    return [label for i in range(pairs)
            for label in ((WITHOUT, WITH) if i % 2 == 0 else (WITH, WITHOUT))]


def summary(totals: dict[str, list[float]]) -> dict[str, float]:
    """Median totals, the ratio of the medians, and the spread of the per-pair ratios."""
    ratios = [w / wo for w, wo in zip(totals[WITH], totals[WITHOUT], strict=True)]
    return {
        "median_without_s": round(statistics.median(totals[WITHOUT]), 2),
        "median_with_s": round(statistics.median(totals[WITH]), 2),
        "ratio_with_to_without": round(statistics.median(totals[WITH])
                                       / statistics.median(totals[WITHOUT]), 2),
        "ratio_min": round(min(ratios), 2),
        "ratio_max": round(max(ratios), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=4_000)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pairs", type=int, default=3, help="cycles of each kind (default 3)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)

    from infra.java import use_preferred_java
    from recsys_contract.config import load_config
    from spark_app.session import create_session
    from spark_app.training import run_training

    use_preferred_java()
    workdir = Path(tempfile.mkdtemp(prefix="bench-selection-"))
    spark = create_session(
        app_name="bench-selection", master=args.master, shuffle_partitions=4, jars=[],
        extra_conf={"spark.ui.enabled": "false", "spark.driver.memory": args.driver_memory,
                    "spark.local.dir": str(workdir / "spark-local")},
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        events = synthetic_events(spark, args.events, args.users, args.products,
                                  args.segments, args.seed).cache()
        n_events = events.count()
        counts = {"training_set": n_events, "total_valid": n_events,
                  "new_since_last_run": n_events}

        def cycle(label: str, n: int) -> dict:
            folder = workdir / f"{n:02d}-{label}"
            cfg = load_config(overrides=[
                f"paths.results={folder / 'results'}", f"paths.state={folder / 'state'}",
                f"selection.every_n_runs={1 if label == WITH else 0}",
            ])
            outcome = run_training(spark, events, cfg, sequence=1, event_counts=counts)
            run = local_dir(outcome.path)
            manifest = json.loads((run / "manifest.json").read_text())
            metrics = json.loads((run / "metrics.json").read_text())
            timings = manifest["timings_seconds"]
            figures = {"label": label, "total_s": timings["total"],
                       "select_s": timings.get("select", 0.0),
                       "accept_metric": metrics["accept_metric"],
                       "model": metrics["model"].get(metrics["accept_metric"]),
                       "chosen": (metrics.get("selection") or {}).get("chosen")}
            log.info("%s", figures)
            shutil.rmtree(folder, ignore_errors=True)
            return figures

        cycle(WITHOUT, 0)  # warm-up: the JVM's first cycle is not what later cycles cost
        cycles = [cycle(label, n) for n, label in enumerate(order(args.pairs), start=1)]
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    totals = {kind: [c["total_s"] for c in cycles if c["label"] == kind]
              for kind in (WITH, WITHOUT)}
    figures = {"events": n_events, "cycles": cycles, **summary(totals),
               "load_after": os.getloadavg()}
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
