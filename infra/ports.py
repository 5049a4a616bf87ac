"""Loopback ports: picking free ones, checking that saved ones are still ours to take."""

from __future__ import annotations

import argparse
import contextlib
import socket
from collections.abc import Iterable

import psutil

from infra.errors import PortInUseError

HOST = "127.0.0.1"


def free_ports(count: int, host: str = HOST) -> list[int]:
    """Return `count` distinct ports the OS reports free on `host` right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a listening socket could be bound to `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_answers(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str | None:
    """Describe the process listening on `port` ("pid 123 (java)"), if the OS tells us."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    return None
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return None


def port_in_use_message(port: int, service: str, owner: str | None, hint: str) -> str:
    """The one-line message for a port that another process holds."""
    held_by = f" by {owner}" if owner else ""
    return f"port {port} on {HOST} ({service}) is already in use{held_by}; {hint}"


def ensure_ports_free(ports: Iterable[tuple[int, str]], hint: str) -> None:
    """Raise PortInUseError for the first (port, service) pair that cannot be bound."""
    for port, service in ports:
        if not port_is_free(port):
            raise PortInUseError(port_in_use_message(port, service, port_owner(port), hint))


def parse_port(text: str) -> int:
    """argparse type: a TCP port number 1..65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1..65535")
    return port


def parse_host_ports(servers: str) -> list[tuple[str, int]]:
    """Split a bootstrap string "h1:p1,h2:p2" into (host, port) pairs."""
    pairs: list[tuple[str, int]] = []
    for item in servers.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"not host:port: {item!r} in {servers!r}")
        pairs.append((host, int(port)))
    return pairs
