"""The command line every local service shares: `start | stop | status`, homes, exit codes.

A service's CLI module (infra/kafka_cli.py, spark_cli.py, hdfs_cli.py) declares a `DaemonCli`:
its `start` options, each falling back to the value saved in the home, then to a default, and
how its status reads. Exit codes: 0 done (status: running), 2 a named error (one log line),
3 status of a service that is not running.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.daemon import REPO_ROOT, DaemonGroup
from infra.errors import InfraError
from infra.processes import load_json

log = logging.getLogger(__name__)

EXIT_ERROR = 2
EXIT_NOT_RUNNING = 3
START_TIMEOUT = 120.0  # seconds `start` waits for the service to be ready
STOP_TIMEOUT = 30.0  # seconds `stop` waits before SIGKILL


def configure_logging(verbose: bool = False) -> None:
    """Progress lines on stderr; client libraries only when something is wrong."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("kafka").setLevel(logging.ERROR)


def resolve_home(given: str | None, default: str) -> Path:
    """The home folder: as given (relative to the working directory), else `default` under
    the repository root."""
    return Path(given).absolute() if given else REPO_ROOT / default


def run_command(command: Callable[[], int]) -> int:
    """Run a CLI command; a named infra error becomes one log line and exit code 2."""
    try:
        return command()
    except InfraError as exc:
        log.error("%s", exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_ERROR


def positive_int(text: str) -> int:
    """argparse type: a count of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


@dataclass(frozen=True)
class StartOption:
    """A `start` option: given on the command line, else saved in the home, else `default`."""

    flag: str  # "--workers"
    param: str  # the service class's keyword argument
    help: str
    default: Any
    saved_key: str | None = None  # None: the service adopts its saved value itself (ports)
    type: Callable[[str], Any] = positive_int
    choices: tuple[Any, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def value(self, args: argparse.Namespace | None, saved: Mapping[str, Any] | None) -> Any:
        """What to pass as `param`: given, else saved, else the default on a fresh home."""
        given = getattr(args, self.dest, None) if args is not None else None
        if given is not None:
            return given
        if self.saved_key is None:
            return None if saved else self.default
        return (saved or {}).get(self.saved_key, self.default)


@dataclass(frozen=True)
class DaemonCli:
    """The command line of one service (see the module's docstring)."""

    service: type[DaemonGroup]
    script: str  # scripts/<script> runs it; its home defaults to var/<script>
    doc: str | None  # the CLI module's docstring: its first line describes the command
    helps: tuple[str, str]  # of start and stop
    start_options: tuple[StartOption, ...]
    headline: Callable[[Mapping[str, Any]], str]  # status: the service's addresses
    describe: Callable[[Mapping[str, Any]], str]  # status: one process (its pid, ports)

    def build_parser(self) -> argparse.ArgumentParser:
        """The argparse parser: start | stop | status, each with --home."""
        parser = argparse.ArgumentParser(prog=f"scripts/{self.script}",
                                         description=(self.doc or self.script).splitlines()[0])
        parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        sub = parser.add_subparsers(dest="command", required=True)
        helps = (*self.helps, "show pids, ports and logs; exit 0 if running, 3 if not")
        start, stop, status = (
            sub.add_parser(name, help=text, description=text)
            for name, text in zip(("start", "stop", "status"), helps, strict=True)
        )
        for cmd in (start, stop, status):
            cmd.add_argument("--home",
                             help=f"state folder (default: var/{self.script} in the repo)")
        for opt in self.start_options:
            start.add_argument(opt.flag, type=opt.type, choices=opt.choices, default=None,
                               help=f"{opt.help} (default: as saved in the home, else "
                                    f"{opt.default})")
        start.add_argument("--timeout", type=float, default=START_TIMEOUT,
                           help="seconds to wait")
        stop.add_argument("--timeout", type=float, default=STOP_TIMEOUT,
                          help="seconds before SIGKILL")
        status.add_argument("--json", action="store_true", help="print JSON")
        return parser

    def open_home(self, home: Path, args: argparse.Namespace | None = None) -> DaemonGroup:
        """The service on `home`: options given, else the home's saved settings, else defaults."""
        saved = load_json(home / self.service.state_name)
        kwargs = {opt.param: opt.value(args, saved) for opt in self.start_options}
        return self.service(home, **kwargs)

    def format_status(self, status: Mapping[str, Any]) -> str:
        """Human-readable status: the service, then one line per process."""
        state = "running" if status["running"] else "not running"
        rows = status.get(self.service.status_key, [status])
        lines = [f"{self.service.service} in {status['home']}: {state}; {self.headline(status)}"]
        lines += [f"  {self.describe(row)}, log {row['log']}" for row in rows]
        return "\n".join(lines) + "\n"

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run one command; the exit code."""
        args = self.build_parser().parse_args(argv)
        configure_logging(args.verbose)
        home = resolve_home(args.home, f"var/{self.script}")
        return run_command(lambda: self._run(args, home))

    def _run(self, args: argparse.Namespace, home: Path) -> int:
        if args.command == "start":
            self.open_home(home, args).start(timeout=args.timeout)
            return 0
        if not (home / self.service.state_name).exists():
            if args.command == "stop":
                return 0
            not_set_up = {"home": str(home), "running": False}
            sys.stdout.write(json.dumps(not_set_up) + "\n" if args.json
                             else f"no {self.service.service} set up in {home}\n")
            return EXIT_NOT_RUNNING
        service = self.open_home(home)
        if args.command == "stop":
            service.stop(timeout=args.timeout)
            return 0
        status = service.status()
        sys.stdout.write(json.dumps(status, indent=2) + "\n" if args.json
                         else self.format_status(status))
        return 0 if status["running"] else EXIT_NOT_RUNNING
