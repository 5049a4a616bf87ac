"""``python -m visualize``: render a run's pictures and report, or follow new runs."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from recsys_contract.runs import LATEST
from visualize.errors import VisualizeError
from visualize.plots import PlotOptions
from visualize.remote import DEFAULT_WEBHDFS_PORT, is_remote, mirror
from visualize.report import render_run
from visualize.watch import watch

logger = logging.getLogger(__name__)

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (docs/visualize.md explains them)."""
    parser = argparse.ArgumentParser(
        prog="visualize",
        description="Plots and an HTML report of a published recommendation run.",
    )
    parser.add_argument("--results", default="results",
                        help="results directory holding runs/ and latest (default: results), "
                        "or hdfs://namenode:port/path, webhdfs://namenode:http_port/path")
    parser.add_argument("--webhdfs-port", type=int, default=DEFAULT_WEBHDFS_PORT,
                        help="the NameNode's HTTP (WebHDFS) port for an hdfs:// --results "
                        "(default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=Path("var/visualize"),
                        help="where runs read from HDFS are mirrored, and their reports "
                        "written (default: var/visualize)")
    parser.add_argument("--run", default=LATEST,
                        help="run id to render, or 'latest' (default: latest)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: <results>/reports/<run_id>/)")
    parser.add_argument("--watch", action="store_true",
                        help="render again whenever a new run is published (Ctrl-C stops)")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between two looks at results/latest (default: 5)")
    parser.add_argument("--max-products", type=int, default=PlotOptions.max_products,
                        help="products in the graph before it is sampled (default: %(default)s)")
    parser.add_argument("--max-users", type=int, default=PlotOptions.max_users,
                        help="users in the graph before it is sampled (default: %(default)s)")
    parser.add_argument("--dpi", type=int, default=PlotOptions.dpi,
                        help="pixels per inch of the PNGs (default: %(default)s)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _stop_on_signals() -> None:
    """Let Ctrl-C (even when started with SIGINT ignored, as a background job is) and SIGTERM
    stop --watch cleanly."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 with a one-line message on a named error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("interval", "max_products", "max_users", "dpi"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.watch and args.run != LATEST:
        parser.error("--watch follows results/latest; it cannot be combined with --run")
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    matplotlib.use("Agg")
    options = PlotOptions(dpi=args.dpi, max_products=args.max_products, max_users=args.max_users)
    remote = is_remote(args.results)
    if args.watch and remote:
        parser.error("--watch reads a local results folder; render HDFS runs one at a time")
    try:
        if args.watch:
            results = Path(args.results)
            if not results.is_dir():
                logger.info("%s does not exist yet; waiting for the first run", results)
            _stop_on_signals()

            def render(run_id: str) -> None:
                rendered = render_run(results, run_id, args.out, options=options)
                print(rendered.index, flush=True)

            watch(results, render, interval=args.interval)
            return 0
        results = (mirror(args.results, args.run, args.cache, args.webhdfs_port) if remote
                   else Path(args.results))
        rendered = render_run(results, args.run, args.out, options=options)
    except VisualizeError as exc:
        print(f"visualize: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(rendered.index)
    return 0
