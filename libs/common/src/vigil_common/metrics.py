"""Prometheus /metrics over HTTP (prometheus-client's own server, in a thread)."""

from __future__ import annotations

from prometheus_client import start_http_server

from vigil_common import logs

log = logs.get(__name__)


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Serve /metrics on ``port`` (0 = a free one); returns the port actually bound."""
    server, _thread = start_http_server(port, addr=host)
    bound = server.server_address[1]
    log.info("metrics listening", url=f"http://{host}:{bound}/metrics")
    return bound
