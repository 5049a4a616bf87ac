"""Benchmark of one training run (issue 4): stage timings, cycle / bare-fit ratio, `implicit`.

Not a test. Generates seeded synthetic sales events with taste segments in Spark, then in the
same Spark session:
  1. the bare ALS fit on the prepared (user, product, rating) pairs,
  2. one whole training cycle (spark_app.training.run_training: prepare -> export), the first
     in this JVM (what the benchmark has always measured),
  3. the same cycle again, warm (--warm-cycles, default 20): same events, its own results and
     state folders, so it does exactly the same work (new id maps included) as the first; a
     streaming job runs many cycles in one JVM, and this is what every cycle after its first
     costs. The JIT keeps compiling code that a cycle runs only a few times for many cycles
     (1M events: 12.7 s of compiler time in warm cycle 1, ~2 s from about cycle 14 on), so the
     steady state is given as the median of the last half of the warm cycles.
     With --keep-state the warm cycles share the first cycle's state folder instead: the id
     maps exist and no id is new, as in a streaming job's later runs. After every warm
     cycle a bare fit is timed again (--no-paired-fits to skip): each cycle is also given as
     a ratio to the mean of the bare fits just before and after it, which a machine that is
     slower or faster for a few minutes affects on both sides alike,
  4. the `implicit` library's ALS on the same matrix (scipy CSR), same rank, iterations,
     regularization and confidence 1 + alpha * rating,
With --strict the job is measured as a user runs it (see the option); --warmup-events runs the
job's training warm-up first, as a fresh job does while its first threshold fills. Both print
which figure they are. The script prints every figure, the ratios (first cycle, each warm cycle
and the steady state to the bare fit), the Spark jobs each stage submitted, peak memory (driver
Python, JVM, Python workers) and the BLAS that Spark's ALS loaded.

    .venv/bin/python benchmarks/bench_training.py   # 1M events, 50k users, 10k products
    .venv/bin/python benchmarks/bench_training.py --events 5000000 --users 250000 --products 50000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

log = logging.getLogger("bench_training")


class PeakMemory:
    """Samples the RSS of this process and its children (JVM, Python workers) in a thread."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak = {"driver_python": 0, "jvm": 0, "python_workers": 0, "total": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        sizes = {"driver_python": me.memory_info().rss, "jvm": 0, "python_workers": 0}
        for child in me.children(recursive=True):
            try:
                name = child.name()
                rss = child.memory_info().rss
            except psutil.Error:
                continue
            sizes["jvm" if "java" in name else "python_workers"] += rss
        sizes["total"] = sum(sizes.values())
        for key, value in sizes.items():
            self.peak[key] = max(self.peak[key], value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, float]:
        return {k: round(v / 2**20) for k, v in self.peak.items()}


def local_dir(uri: str) -> Path:
    """The local folder of a run's `file:` URI (TrainingOutcome.path)."""
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path))


def same_files(a: Path, b: Path, names: tuple[str, ...]) -> bool:
    """Whether the files `names` of two run folders have the same lines (order aside), by a
    digest of each file's multiset of lines: read a line at a time, so that the benchmark's
    own memory does not grow with the run (a sort of every line held 1 GiB at 10M events)."""

    def digest(path: Path) -> tuple[int, int]:
        total, count = 0, 0
        if path.is_file():
            with path.open("rb") as lines:
                for line in lines:
                    total += int.from_bytes(hashlib.blake2b(line.rstrip(b"\n"),
                                                            digest_size=8).digest())
                    count += 1
        return total % 2**64, count

    return all(digest(a / name) == digest(b / name) for name in names)


def blas_in_use(spark) -> dict[str, str]:
    """Which BLAS/LAPACK implementation dev.ludovic.netlib (Spark's ALS) loaded."""
    jvm = spark.sparkContext._jvm
    out = {}
    for kind, cls in (
        ("blas", jvm.dev.ludovic.netlib.blas.BLAS),
        ("lapack", jvm.dev.ludovic.netlib.lapack.LAPACK),
    ):
        try:
            out[kind] = cls.getInstance().getClass().getName()
        except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
            out[kind] = f"unknown ({exc.__class__.__name__})"
    return out


def jvm_counters(spark) -> dict[str, int]:
    """Cumulative JVM work outside the tasks: milliseconds of JIT compilation and of garbage
    collection, classes loaded, and Spark's generated-code compilations (Janino)."""
    jvm = spark.sparkContext._jvm
    beans = jvm.java.lang.management.ManagementFactory
    codegen = jvm.org.apache.spark.metrics.source.CodegenMetrics
    return {
        "jit_ms": int(beans.getCompilationMXBean().getTotalCompilationTime()),
        "gc_ms": sum(int(b.getCollectionTime()) for b in beans.getGarbageCollectorMXBeans()),
        "classes_loaded": int(beans.getClassLoadingMXBean().getTotalLoadedClassCount()),
        "codegen_compilations": int(codegen.METRIC_COMPILATION_TIME().getCount()),
    }


def counters_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after}


def jvm_note(work: dict[str, int]) -> str:
    return (
        f"JIT {work['jit_ms'] / 1000:.1f} s, GC {work['gc_ms'] / 1000:.1f} s, "
        f"{work['codegen_compilations']} generated classes compiled"
    )


class StageJobs(logging.Handler):
    """Counts the Spark jobs each training stage submits, from the pipeline's stage log lines
    ("training stage X: start" / "... done") and the id the scheduler gives its next job.

    The handler runs inside the timed cycle, so it must cost next to nothing: the status
    tracker's list of job ids took 59-92 ms per call with 600 jobs in an idle session (two
    calls per stage; gaps of up to 0.21 s between stages in a cycle), the scheduler's job
    counter 0.3 ms.
    """

    def __init__(self, spark) -> None:
        super().__init__(level=logging.INFO)
        # DAGScheduler.nextJobId: Scala's private[scheduler], public to the JVM (and py4j).
        self.scheduler = spark.sparkContext._jsc.sc().dagScheduler()
        self.jobs: dict[str, int] = {}
        self._open: dict[str, int] = {}

    def _next_id(self) -> int:
        return int(self.scheduler.nextJobId())

    def emit(self, record: logging.LogRecord) -> None:
        if not record.getMessage().startswith("training stage ") or len(record.args or ()) < 1:
            return
        stage = str(record.args[0])
        if record.getMessage().endswith(": start"):
            self._open[stage] = self._next_id()
        elif stage in self._open:
            self.jobs[stage] = self._next_id() - self._open.pop(stage)

    def take(self) -> dict[str, int]:
        jobs, self.jobs = self.jobs, {}
        return {**jobs, "total": sum(jobs.values())}


def steady_state(totals: list[float]) -> tuple[int, float] | None:
    """(number of the first cycle counted, median time) of the last half of the warm cycles
    (numbered from 1), or None without warm cycles."""
    if not totals:
        return None
    first = len(totals) // 2 + 1 if len(totals) > 1 else 1
    return first, round(statistics.median(totals[first - 1 :]), 2)


def timed(label: str, fn, timings: dict[str, float]):
    started = time.perf_counter()
    result = fn()
    timings[label] = round(time.perf_counter() - started, 2)
    log.info("%s: %.2f s", label, timings[label])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--reg", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--shuffle-partitions", type=int, default=4)
    parser.add_argument(
        "--driver-memory", default=None,
        help="spark.driver.memory (default: 4g, or with --strict the job's own from conf/)",
    )
    parser.add_argument("--pagerank-iterations", type=int, default=10)
    parser.add_argument(
        "--warm-cycles", type=int, default=20, help="cycles after the first, same JVM (default 20)"
    )
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="warm cycles reuse the first cycle's id maps (default: fresh state, new maps)",
    )
    parser.add_argument(
        "--paired-fits",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time a bare fit after every warm cycle too, for each cycle's ratio to the fits "
        "on either side of it (default: on)",
    )
    parser.add_argument(
        "--selection-every", type=int, default=0,
        help="selection.every_n_runs for the cycles (default 0: the fixed ALS settings, as the "
        "reference figures were measured; bench_selection.py measures what selection costs)",
    )
    parser.add_argument(
        "--strict", action="store_true",
        help="measure the job as a user runs it: events read from Parquet files (not a cached "
        "table), the job's shuffle partitions and driver memory (conf/), the first cycle before "
        "any fit, and the reference is a bare fit of the run's own training split (80%% of the "
        "pairs), timed after the first cycle",
    )
    parser.add_argument(
        "--warmup-events", type=int, default=0,
        help="before the first cycle, the job's training warm-up (spark_app/stream/warmup.py) "
        "on this many synthetic events, as a fresh job runs it while its first threshold "
        "fills (default 0: none)",
    )
    parser.add_argument("--skip-implicit", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting for the session (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)

    from pyspark.sql import functions as F

    from infra.java import use_preferred_java
    from recsys_contract.config import load_config
    from spark_app.schema import PRODUCT_IDX, USER_IDX
    from spark_app.session import create_session
    from spark_app.training import run_training
    from spark_app.training.als import build_als, fit_als, resolve_blocks
    from spark_app.training.prepare import (
        aggregate_indexed_pairs,
        attach_indices,
        update_id_maps,
    )
    from spark_app.training.synthetic import synthetic_events

    if args.strict:
        args.shuffle_partitions = load_config().spark.shuffle_partitions
    elif args.driver_memory is None:
        args.driver_memory = "4g"

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-training-"))
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    load_before = os.getloadavg()
    figures: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "load_before": load_before}
    timings: dict[str, float] = {}

    figures["java_home"] = str(use_preferred_java())  # as scripts/test and scripts/submit do
    log.info("JVM: %s", figures["java_home"])
    with PeakMemory() as memory:
        spark = create_session(
            app_name="bench-training",
            master=args.master,
            shuffle_partitions=args.shuffle_partitions,
            jars=[],
            extra_conf={
                "spark.ui.enabled": "false",
                **({"spark.driver.memory": args.driver_memory} if args.driver_memory else {}),
                "spark.local.dir": str(workdir / "spark-local"),
                **dict(item.split("=", 1) for item in args.conf),
            },
        )
        spark.sparkContext.setLogLevel("WARN")
        parallelism = spark.sparkContext.defaultParallelism
        stage_jobs = StageJobs(spark)
        logging.getLogger("spark_app.training.pipeline").addHandler(stage_jobs)
        figures["blas"] = blas_in_use(spark)
        log.info("BLAS in use: %s", figures["blas"])

        events = synthetic_events(
            spark, args.events, args.users, args.products, args.segments, args.seed
        )
        if args.strict:  # read from files at each use, as the job reads its event store
            events.write.parquet(str(workdir / "store"))
            events = spark.read.parquet(str(workdir / "store"))
        else:
            events = events.cache()
        n_events = timed("generate", events.count, timings)
        figures["spark_conf"] = {
            key: spark.conf.get(key, None)
            for key in ("spark.driver.memory", "spark.sql.shuffle.partitions")
        }
        if args.warmup_events:
            from spark_app.stream.warmup import warm_up

            warm_cfg = load_config(overrides=[f"training.warmup_events={args.warmup_events}",
                                              f"selection.every_n_runs={args.selection_every}"])
            timings["job_warmup"] = warm_up(spark, warm_cfg, str(workdir / "warmup"))

        def bare_pairs():
            """What the reference fit fits: every pair, or (--strict) the run's training split."""
            if args.strict:
                from spark_app.training.pipeline import CacheScope
                from spark_app.training.prepare import prepare
                from spark_app.training.settings import RunSettings
                from spark_app.training.split import split_stage

                prepared = prepare(spark, events, str(workdir / "bare"))
                with CacheScope() as keep:  # the split's own tables go when the train side is in
                    split = split_stage(prepared.pairs, RunSettings.from_config(
                        config_for(workdir / "bare")).split, keep)
                    train = split.train.select(USER_IDX, PRODUCT_IDX, "rating").cache()
                    train.count()
                return train
            users, products = update_id_maps(spark, events, workdir / "bare")
            indexed = attach_indices(events, users, products)
            return aggregate_indexed_pairs(indexed).select(USER_IDX, PRODUCT_IDX, "rating").cache()

        als = build_als(
            rank=args.rank,
            max_iter=args.iterations,
            reg_param=args.reg,
            alpha=args.alpha,
            implicit_prefs=True,
            seed=args.seed,
            num_blocks=resolve_blocks(0, parallelism),
        )
        if not args.strict:  # the flattering order: ALS compiled before the first cycle
            pairs = bare_pairs()
            n_pairs = pairs.count()
            timed("warmup_fit_all_pairs", lambda: fit_als(pairs, als), timings)  # JIT warm-up
            timed("bare_fit_all_pairs", lambda: fit_als(pairs, als), timings)

        def config_for(folder: Path):
            state = workdir if args.keep_state else folder
            return load_config(
                overrides=[
                    f"paths.results={folder / 'results'}",
                    f"paths.state={state / 'state'}",
                    f"als.rank={args.rank}",
                    f"als.max_iter={args.iterations}",
                    f"als.reg_param={args.reg}",
                    f"als.alpha={args.alpha}",
                    f"als.seed={args.seed}",
                    f"graph.pagerank_iterations={args.pagerank_iterations}",
                    f"selection.every_n_runs={args.selection_every}",
                ]
            )

        def run_cycle(label: str, folder: Path, sequence: int):
            """One timed training run, and the JVM's work outside the tasks during it."""
            before = jvm_counters(spark)
            outcome = timed(
                label,
                lambda: run_training(
                    spark,
                    events,
                    config_for(folder),
                    sequence=sequence,
                    event_counts={
                        "training_set": n_events,
                        "total_valid": n_events,
                        "new_since_last_run": n_events,
                    },
                ),
                timings,
            )
            return outcome, counters_since(before, jvm_counters(spark))

        outcome, figures["cycle_jvm"] = run_cycle("cycle_wall", workdir, 1)
        manifest = json.loads((local_dir(outcome.path) / "manifest.json").read_text())
        figures["cycle_stages"] = manifest["timings_seconds"]
        figures["cycle_jobs"] = stage_jobs.take()
        figures["accepted"] = outcome.accepted
        figures["reason"] = outcome.reason
        figures["metrics"] = outcome.metrics
        figures["events"] = manifest["events"]

        if args.strict:  # the reference after the cycle, in the JVM the cycle warmed
            pairs = bare_pairs()
            n_pairs = pairs.count()
            timed("bare_fit_all_pairs_after_1", lambda: fit_als(pairs, als), timings)
        timed("bare_fit_all_pairs_after", lambda: fit_als(pairs, als), timings)

        # Warm cycles: the same work again in this JVM (fresh results and state folders).
        figures["warm_cycles"] = []
        fit_before = timings["bare_fit_all_pairs_after"]
        for i in range(1, args.warm_cycles + 1):
            warm, jvm_work = run_cycle(f"warm_cycle_{i}_wall", workdir / f"warm-{i}", 1 + i)
            warm_manifest = json.loads((local_dir(warm.path) / "manifest.json").read_text())
            fits_beside: dict[str, float] = {}
            if args.paired_fits:
                label = f"bare_fit_after_warm_cycle_{i}"
                timed(label, lambda: fit_als(pairs, als), timings)
                fits_beside = {"bare_fit_before": fit_before, "bare_fit_after": timings[label]}
                fit_before = timings[label]
            figures["warm_cycles"].append(
                {
                    **fits_beside,
                    "stages": warm_manifest["timings_seconds"],
                    "jobs": stage_jobs.take(),
                    "jvm": jvm_work,
                    "same_metrics_as_first": warm.metrics == outcome.metrics,
                    "same_recommendations_as_first": same_files(
                        local_dir(outcome.path), local_dir(warm.path),
                        ("edges.csv", "vertices.csv", "popular.csv"),
                    ),
                }
            )
        if args.warm_cycles:
            timed("bare_fit_all_pairs_after_warm", lambda: fit_als(pairs, als), timings)

        if not args.skip_implicit:
            import numpy as np
            import scipy.sparse as sp
            from implicit.cpu.als import AlternatingLeastSquares

            local = pairs.select(USER_IDX, PRODUCT_IDX, F.col("rating")).toPandas()
            confidence = 1.0 + args.alpha * local["rating"].to_numpy(np.float32)
            matrix = sp.csr_matrix(
                (confidence, (local[USER_IDX].to_numpy(), local[PRODUCT_IDX].to_numpy())),
                shape=(int(local[USER_IDX].max()) + 1, int(local[PRODUCT_IDX].max()) + 1),
            )
            for label, use_cg in (("implicit_fit_cg", True), ("implicit_fit_cholesky", False)):
                model_i = AlternatingLeastSquares(
                    factors=args.rank,
                    regularization=args.reg,
                    alpha=1.0,
                    iterations=args.iterations,
                    use_cg=use_cg,
                    random_state=args.seed,
                    num_threads=psutil.cpu_count(),
                )
                timed(label, lambda m=model_i: m.fit(matrix, show_progress=False), timings)
        spark.stop()

    figures["timings"] = timings
    figures["pairs"] = n_pairs
    figures["peak_rss_mib"] = memory.report()
    figures["load_after"] = os.getloadavg()
    cycle = figures["cycle_stages"]["total"]
    # The machine is shared: the bare fit is timed before and after the cycles and the fastest
    # is used (the conservative choice for the ratio).
    bare = min(v for k, v in timings.items() if k.startswith("bare_fit_all_pairs"))
    figures["bare_fit_used_for_ratios"] = bare
    figures["ratio_first_cycle_to_bare_fit"] = round(cycle / bare, 2)
    figures["ratio_first_cycle_to_its_fit_stage"] = round(cycle / figures["cycle_stages"]["fit"], 2)
    for i, warm in enumerate(figures["warm_cycles"], start=1):
        figures[f"ratio_warm_cycle_{i}_to_bare_fit"] = round(warm["stages"]["total"] / bare, 2)
    steady = steady_state([warm["stages"]["total"] for warm in figures["warm_cycles"]])
    if steady is not None:
        figures["steady_state"] = {
            "warm_cycles": f"{steady[0]}-{len(figures['warm_cycles'])}",
            "median_cycle_seconds": steady[1],
            "ratio_to_bare_fit": round(steady[1] / bare, 2),
        }
    # Paired: each warm cycle against the mean of the bare fits timed just before and just
    # after it, so that a machine slower or faster for a while weighs on both sides alike.
    paired = [
        warm["stages"]["total"] / ((warm["bare_fit_before"] + warm["bare_fit_after"]) / 2)
        for warm in figures["warm_cycles"]
        if "bare_fit_after" in warm
    ]
    for warm, ratio in zip(figures["warm_cycles"], paired, strict=False):
        warm["ratio_to_paired_fits"] = round(ratio, 2)
    steady_paired = steady_state(paired)
    if steady_paired is not None:
        figures["steady_state_paired"] = {
            "warm_cycles": f"{steady_paired[0]}-{len(paired)}",
            "median_ratio_to_paired_fits": round(steady_paired[1], 2),
        }
    if "implicit_fit_cg" in timings:
        figures["ratio_spark_fit_to_implicit_cg"] = round(bare / timings["implicit_fit_cg"], 2)
        figures["ratio_spark_fit_to_implicit_cholesky"] = round(
            bare / timings["implicit_fit_cholesky"], 2
        )
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    print(
        "strict: events read from Parquet, the job's driver memory and shuffle partitions, the "
        "reference fit on the run's training split timed after the first cycle"
        if args.strict else
        "flattering: cached events, the reference fit on all pairs, ALS compiled by two fits "
        "before the first cycle", f"{figures['spark_conf']}"
    )
    if "job_warmup" in timings:
        print(f"the job's warm-up on {args.warmup_events} synthetic events before the first "
              f"cycle: {timings['job_warmup']:.1f} s")
    print(
        f"first cycle {cycle:.1f} s / bare fit {bare:.2f} s = "
        f"{figures['ratio_first_cycle_to_bare_fit']}x (fresh JVM: the first run of a job; "
        f"{jvm_note(figures['cycle_jvm'])})"
    )
    for i, warm in enumerate(figures["warm_cycles"], start=1):
        pair = (
            f"; {warm['ratio_to_paired_fits']}x the bare fits beside it "
            f"({warm['bare_fit_before']:.2f}, {warm['bare_fit_after']:.2f} s)"
            if "ratio_to_paired_fits" in warm
            else ""
        )
        print(
            f"warm cycle {i} {warm['stages']['total']:.1f} s / bare fit {bare:.2f} s = "
            f"{figures[f'ratio_warm_cycle_{i}_to_bare_fit']}x{pair} (same JVM, same data, "
            f"same work; {jvm_note(warm['jvm'])})"
        )
    if steady is not None:
        print(
            f"steady state (median of warm cycles {figures['steady_state']['warm_cycles']}) "
            f"{steady[1]:.1f} s / bare fit {bare:.2f} s = "
            f"{figures['steady_state']['ratio_to_bare_fit']}x"
        )
    if steady_paired is not None:
        print(
            f"steady state, paired (median of warm cycles "
            f"{figures['steady_state_paired']['warm_cycles']}, each cycle / the mean of the bare "
            f"fits before and after it) = "
            f"{figures['steady_state_paired']['median_ratio_to_paired_fits']}x"
        )
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
