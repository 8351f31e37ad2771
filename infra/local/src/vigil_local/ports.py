"""Loopback port helpers for local runs and tests."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing listens on right now.

    The kernel picks the port and the socket is closed again, so another process may take it
    before the caller binds it; callers that start a server on it should treat "address in use"
    as a reason to pick again, not as a bug.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Return True when a TCP connection to `host:port` is accepted within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
