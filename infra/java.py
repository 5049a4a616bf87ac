"""Finding a Java 17+ runtime for the Kafka broker and the Spark daemons."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from infra.errors import JavaNotFoundError, JavaVersionError

log = logging.getLogger(__name__)

MIN_JAVA = 17
_SPEC_RE = re.compile(r"java\.specification\.version\s*=\s*(\S+)")


def parse_java_major(settings_output: str) -> int | None:
    """The major version from `java -XshowSettings:properties -version` output ("1.8" -> 8)."""
    match = _SPEC_RE.search(settings_output)
    if not match:
        return None
    parts = match.group(1).split(".")
    try:
        return int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(parts[0])
    except ValueError:
        return None


def find_java(java: str | os.PathLike[str] | None = None) -> Path:
    """The java executable to use: `java` if given, else $JAVA_HOME/bin/java, else PATH."""
    if java is not None:
        path = Path(java)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise JavaNotFoundError(
                f"java executable {path} does not exist or is not executable; "
                f"install a JDK {MIN_JAVA}+ and set JAVA_HOME (or pass a valid java path)"
            )
        return path
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        path = Path(java_home) / "bin" / "java"
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise JavaNotFoundError(
            f"JAVA_HOME={java_home} has no bin/java; set JAVA_HOME to a JDK {MIN_JAVA}+"
        )
    found = shutil.which("java")
    if not found:
        raise JavaNotFoundError(
            f"no java on PATH and JAVA_HOME is not set; install a JDK {MIN_JAVA}+ "
            "(apt-get install openjdk-17-jdk-headless) and set JAVA_HOME"
        )
    return Path(found)


def java_major(java: Path) -> int:
    """Run `java` once to read its major version."""
    try:
        done = subprocess.run(
            [str(java), "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaNotFoundError(
            f"could not run {java} ({exc}); set JAVA_HOME to a JDK {MIN_JAVA}+"
        ) from exc
    major = parse_java_major(done.stderr + done.stdout)
    if major is None:
        raise JavaNotFoundError(
            f"{java} did not report its version; set JAVA_HOME to a JDK {MIN_JAVA}+"
        )
    return major


def ensure_java(java: str | os.PathLike[str] | None = None) -> Path:
    """A java executable of version 17 or newer, or a named error saying to set JAVA_HOME."""
    path = find_java(java)
    major = java_major(path)
    if major < MIN_JAVA:
        raise JavaVersionError(
            f"{path} is Java {major}; Kafka 4 and Spark 4 need Java {MIN_JAVA}+: "
            f"set JAVA_HOME to a JDK {MIN_JAVA}+"
        )
    log.debug("using %s (Java %d)", path, major)
    return path


def java_home_of(java: Path) -> Path:
    """The JAVA_HOME that contains this java executable (…/bin/java -> …)."""
    return java.resolve().parent.parent
