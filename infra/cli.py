"""Shared bits of the infra command lines: logging to stderr, homes, named-error exits."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from infra.errors import InfraError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXIT_ERROR = 2
EXIT_NOT_RUNNING = 3


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
