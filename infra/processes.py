"""Background service processes: spawning, pid files, liveness, stopping, shared state files."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)


def spawn(
    cmd: Sequence[str],
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session with its output in `log_file`; record its pid.

    The own session keeps the service alive after the starting CLI exits and keeps a Ctrl-C
    in the terminal from reaching it; stop() is the way to end it.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab" if append else "wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    write_pid(pid_file, proc.pid)
    return proc


def write_pid(pid_file: Path, pid: int) -> None:
    """Record a pid (atomically, so a reader never sees half a number)."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file`, or None if there is none."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def process_matches(pid: int | None, markers: Sequence[str]) -> bool:
    """Whether `pid` is a live (not zombie) process whose command line holds every marker.

    The markers guard against a recycled pid: a pid file outliving its process must not make
    some unrelated process look like the service.
    """
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except psutil.Error:
        return False
    joined = "\0".join(cmdline)
    return all(marker in joined for marker in markers)


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line contains `text` (stray services of a home)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or not info["cmdline"]:
            continue
        if proc.pid != os.getpid() and any(text in arg for arg in info["cmdline"]):
            found.append(proc)
    return found


def _with_descendants(pids: Sequence[int]) -> list[psutil.Process]:
    """The processes with these pids plus all their children (executors, Python workers)."""
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs[pid] = proc
            for child in proc.children(recursive=True):
                procs[child.pid] = child
        except psutil.Error:
            continue
    return list(procs.values())


def terminate(pids: Sequence[int], timeout: float) -> list[int]:
    """SIGTERM the processes and their children, SIGKILL what is left after `timeout`.

    Returns the pids that had to be killed. Children started by this Python process are reaped.
    """
    procs = _with_descendants(pids)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        log.warning("pid %d did not stop within %.0f s; killing it", proc.pid, timeout)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)
    return [p.pid for p in alive]


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a text file ("" if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def read_since(path: Path, offset: int = 0, limit: int = 4 * 1024 * 1024) -> str:
    """Text appended to a log after byte `offset` (at most `limit` bytes of it)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


def file_size(path: Path) -> int:
    """Size of a file in bytes, 0 if it does not exist (where a new run's log starts)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def error_summary(text: str) -> str:
    """The cause of a failure in one line, from a log's text.

    The first ERROR/FATAL line of a log4j log (with the exception line that follows it), else
    the last exception or error line of a console log (JVM errors, uncaught exceptions).
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if " ERROR " in line or " FATAL " in line:
            after = lines[i + 1] if i + 1 < len(lines) else ""
            if after and not after[:1].isspace() and not after.startswith("["):
                return f"{line.strip()}: {after.strip()}"
            return line.strip()
    for line in reversed(lines):
        if not line[:1].isspace() and ("Exception" in line or "Error" in line):
            return line.strip()
    return lines[-1].strip() if lines else "(empty log)"


@contextlib.contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """Hold an exclusive lock on a service home, so two starters never race."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_json(path: Path) -> dict[str, Any] | None:
    """A JSON state file's content, or None if the file does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def save_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a JSON state file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
