"""`scripts/serve` (python -m serve): the recommendations API over the latest published run.

Reads the same settings as the job (conf/defaults.yaml, --config FILE, --set key=value) and
runs the app of serve/app.py on uvicorn until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from recsys_contract.config import AppConfig, add_settings_arguments, settings_from_args
from recsys_contract.errors import RecsysError

log = logging.getLogger("serve")
SHORTCUTS = {"--host": "serve.host", "--port": "serve.port", "--results": "paths.results",
             "--bootstrap-servers": "kafka.bootstrap_servers", "--topic": "kafka.topic"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/serve",
        description="Serve recommendations of the latest published run over HTTP, with new "
        "purchases folded in between runs (docs/serve.md).",
    )
    add_settings_arguments(parser, "serve.port=8080", SHORTCUTS)
    parser.add_argument("--no-fold-in", action="store_true",
                        help="serve the runs only, without the Kafka speed layer")
    parser.add_argument("--log-level", default="INFO", help="Python log level (default INFO)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> AppConfig:
    return settings_from_args(args, SHORTCUTS, ["serve.fold_in=false"] if args.no_fold_in else [])


def run(cfg: AppConfig) -> None:
    import uvicorn

    from serve.app import create_app

    app = create_app(cfg)
    server = uvicorn.Server(uvicorn.Config(
        app,
        host=cfg.serve.host,
        port=cfg.serve.port,
        log_config=None,  # the root logger configured in main()
        access_log=cfg.serve.access_log,
        server_header=False,
        timeout_graceful_shutdown=5,
    ))
    log.info("serving on http://%s:%d (docs at /docs)", cfg.serve.host, cfg.serve.port)
    server.run()
    if not server.started:  # e.g. the port is taken: uvicorn logged why
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # Before numpy loads: an answer is one small matrix-vector product, which BLAS threads
    # only slow down (benchmarks/RESULTS.md, "API server").
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        run(config_from_args(args))
    except RecsysError as exc:
        log.error("%s", exc)
        return 2
    return 0
