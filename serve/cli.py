"""`scripts/serve` (python -m serve): the recommendations API over the latest published run.

Reads the same settings as the job (conf/defaults.yaml, --config FILE, --set key=value) and
runs the app of serve/app.py on uvicorn until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from recsys_contract.config import AppConfig, load_config
from recsys_contract.errors import RecsysError

log = logging.getLogger("serve")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/serve",
        description="Serve recommendations of the latest published run over HTTP, with new "
        "purchases folded in between runs (docs/serve.md).",
    )
    parser.add_argument("--config", type=Path, help="YAML file overriding conf/defaults.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one setting, e.g. --set serve.port=8080 (repeatable)")
    parser.add_argument("--host", help="shortcut for serve.host")
    parser.add_argument("--port", type=int, help="shortcut for serve.port")
    parser.add_argument("--results", help="shortcut for paths.results")
    parser.add_argument("--bootstrap-servers", help="shortcut for kafka.bootstrap_servers")
    parser.add_argument("--topic", help="shortcut for kafka.topic")
    parser.add_argument("--no-fold-in", action="store_true",
                        help="serve the runs only, without the Kafka speed layer")
    parser.add_argument("--log-level", default="INFO", help="Python log level (default INFO)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> AppConfig:
    overrides = list(args.overrides)
    for key, value in (("serve.host", args.host), ("serve.port", args.port),
                       ("paths.results", args.results),
                       ("kafka.bootstrap_servers", args.bootstrap_servers),
                       ("kafka.topic", args.topic)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.no_fold_in:
        overrides.append("serve.fold_in=false")
    return load_config(args.config, overrides)


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
