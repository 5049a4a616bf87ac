"""Finding a Java 17+ runtime for the Kafka broker, the Spark daemons and PySpark's JVM.

Which Java, in order: a path the caller gives, $JAVA_HOME, the newest JDK installed under
/usr/lib/jvm (Spark 4.2 runs on Java 17, 21 and 25, and the job ran faster on 25 than on 17:
benchmarks/DECISIONS.md, row `Java 25 vs 17`), then `java` on PATH.

    .venv/bin/python -m infra.java    # prints the JAVA_HOME that policy picks (scripts use it)
"""

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
JVM_DIRS = (Path("/usr/lib/jvm"),)  # where Debian and Adoptium packages install JDKs
_SPEC_RE = re.compile(r"java\.specification\.version\s*=\s*(\S+)")
_RELEASE_RE = re.compile(r'^JAVA_VERSION="(\d+)', re.M)


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


def release_major(java_home: Path) -> int | None:
    """The major version a JDK's `release` file states (JAVA_VERSION="25.0.3" -> 25)."""
    try:
        match = _RELEASE_RE.search((java_home / "release").read_text(errors="replace"))
    except OSError:
        return None
    return int(match.group(1)) if match else None


def newest_installed_jdk(jvm_dirs: tuple[Path, ...] | None = None) -> Path | None:
    """The home of the newest JDK (>= MIN_JAVA, with bin/java) under `jvm_dirs`, or None."""
    found: list[tuple[int, str, Path]] = []
    for folder in JVM_DIRS if jvm_dirs is None else jvm_dirs:
        candidates = sorted(folder.iterdir()) if folder.is_dir() else []
        for home in candidates:
            major = release_major(home)
            if major is not None and major >= MIN_JAVA and (home / "bin" / "java").is_file():
                found.append((major, str(home.resolve()), home))
    return max(found)[2] if found else None


def preferred_java_home() -> Path | None:
    """$JAVA_HOME if set, else the newest installed JDK, else None (PATH's java)."""
    java_home = os.environ.get("JAVA_HOME")
    return Path(java_home) if java_home else newest_installed_jdk()


def use_preferred_java() -> Path | None:
    """Set JAVA_HOME (if unset) to the preferred JDK, for a JVM this process is about to start."""
    home = preferred_java_home()
    if home is not None and not os.environ.get("JAVA_HOME"):
        os.environ["JAVA_HOME"] = str(home)
        log.info("JAVA_HOME unset: using %s, the newest JDK installed", home)
    return home


def find_java(java: str | os.PathLike[str] | None = None) -> Path:
    """The java executable to use: `java` if given, else $JAVA_HOME/bin/java, else the newest
    JDK under JVM_DIRS, else PATH."""
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
    newest = newest_installed_jdk()
    if newest is not None:
        return newest / "bin" / "java"
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


if __name__ == "__main__":
    chosen = preferred_java_home()
    if chosen is not None:
        print(chosen)
