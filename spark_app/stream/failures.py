"""What stopped the streaming query, in one line: the root cause found in the exception chain.

A failure inside the job reaches the driver wrapped several times: a Python error raised in
the batch handler, or a Py4JJavaError around a SparkException around a task's exception, or a
StreamingQueryException around whatever failed in Spark's own bookkeeping (the checkpoint).
Spark prints its stack traces; the job then ends with one line naming the cause and the path,
and an exit code that says which kind it was (spark_app.errors: EXIT_IO, EXIT_FAILED).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator, Mapping
from typing import Any

from spark_app.errors import JobFailedError, RecsysError, StorageError

JAVA_IO_EXCEPTION = "java.io.IOException"
MAX_CHAIN = 32  # causes followed at most (a chain is normally a handful deep)
# A path or URI in an exception message: /a/b, file:/a/b, hdfs://host:port/a/b
_PATH = re.compile(r"\b[a-z][a-z0-9+.-]*:/[^\s'\"(),;]+|(?<![\w.:/])/[^\s'\"(),;]+")
RESTART_HINT = "fix it and start the job again: the unfinished batch is replayed, nothing is lost"


def describe_failure(exc: BaseException, folders: Mapping[str, str] | None = None
                     ) -> JobFailedError:
    """The error to end the job with, for `exc` raised by the batch handler or the query.

    An I/O error (a Python OSError, a Java IOException anywhere in the chain, a StorageError)
    gives a StorageError; anything else a JobFailedError with the deepest cause. `folders`
    (setting -> path) is named when the cause itself names no path.
    """
    for error in python_chain(exc):
        if isinstance(error, JobFailedError):
            return error
        if isinstance(error, RecsysError):
            return JobFailedError(str(error))
        if isinstance(error, OSError):
            return StorageError(_io_line(_os_error_text(error), [], folders))
    causes = list(java_chain(exc))
    io_errors = [c for c in causes if c[2]]
    if io_errors:
        name, message, _ = io_errors[-1]
        return StorageError(_io_line(f"{name}: {message}", [m for _, m, _ in causes], folders))
    if causes:
        name, message, _ = causes[-1]
        return JobFailedError(f"the streaming query failed: {name}: {message}")
    return JobFailedError(f"the streaming query failed: {type(exc).__name__}: {first_line(exc)}")


def python_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and its causes (`raise ... from`, or the exception being handled)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < MAX_CHAIN:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def java_chain(exc: BaseException) -> Iterator[tuple[str, str, bool]]:
    """(class name, first message line, is an IOException) of each Java cause behind `exc`.

    Nothing if `exc` carries no Java exception or the JVM no longer answers.
    """
    from py4j.java_gateway import is_instance_of
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    throwable = _java_throwable(exc)
    seen = 0
    try:
        while throwable is not None and seen < MAX_CHAIN:
            seen += 1
            message = throwable.getMessage()
            yield (
                throwable.getClass().getName(),
                _python_proxy_error(message) or first_line(message),
                gateway is not None and is_instance_of(gateway, throwable, JAVA_IO_EXCEPTION),
            )
            cause = throwable.getCause()
            if cause is None or cause.equals(throwable):
                return
            throwable = cause
    except Exception:  # noqa: BLE001 - the gateway is gone: what was read so far is the answer
        return


def _java_throwable(exc: BaseException) -> Any:
    """The Java exception a Python exception wraps (Py4JJavaError, pyspark's captured errors)."""
    for error in python_chain(exc):
        java = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
        if java is not None:
            return java
        cause = getattr(error, "_cause", None)  # a CapturedException built from a message
        if isinstance(cause, BaseException):
            found = _java_throwable(cause)
            if found is not None:
                return found
    return None


def _python_proxy_error(message: str | None) -> str | None:
    """The last line of a Python traceback that Py4J passed back to the JVM as a message."""
    if not message or "Traceback (most recent call last)" not in message:
        return None
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _os_error_text(error: OSError) -> str:
    code = errno.errorcode.get(error.errno or 0, "")
    where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f)
    what = f"{type(error).__name__}: {error.strerror or error}" + (f" ({code})" if code else "")
    return f"{what}: {where}" if where else what


def _io_line(cause: str, messages: list[str], folders: Mapping[str, str] | None) -> str:
    """'<cause> [at <path>]; <hint>': the path from the cause, else from the chain, else the
    configured folders."""
    where = ""
    if not _PATH.search(cause):
        path = next((m.group(0).rstrip(".") for m in map(_PATH.search, messages) if m), None)
        if path:
            where = f" (writing {path})"
        elif folders:
            where = " (under " + ", ".join(f"{k}={v}" for k, v in folders.items()) + ")"
    return f"the job stopped on an I/O error: {cause}{where}; {RESTART_HINT}"


def first_line(value: object) -> str:
    text = str(value or "").strip()
    return text.splitlines()[0] if text else "(no message)"
