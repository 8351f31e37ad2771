"""The demo service's HTTP server: ``/`` does the work, ``/healthz`` and ``/metrics`` observe.

Only ``GET /`` is measured, so health probes and metric scrapes do not dilute the latency and
error signals that verification compares between versions.
"""

import itertools
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    generate_latest,
)

from vigil_demo import work
from vigil_demo.profiles import VersionProfile

_http_log = logging.getLogger("demo.http")
_worker_numbers = itertools.count(1)

WORK_ROUTE = "/"


class DemoMetrics:
    """The service's Prometheus metrics, in a registry of their own (one per process)."""

    def __init__(self, node: str, version: str) -> None:
        self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            "http_request_duration_seconds", "Time spent serving a request, in seconds.",
            ["route"], registry=self.registry,
        )
        self.requests = Counter(
            "http_requests_total", "Requests served, by HTTP status.",
            ["status"], registry=self.registry,
        )
        build = Info("demo_build", "Version and node of this process.", registry=self.registry)
        build.info({"version": version, "node": node})

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Records one served request."""
        self.request_duration.labels(route=route).observe(seconds)
        self.requests.labels(status=str(status)).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


@dataclass
class DemoApp:
    """What the request handler needs: identity, behaviour and metrics of this process."""

    node: str
    version: str
    profile: VersionProfile
    metrics: DemoMetrics
    rng: random.Random = field(default_factory=random.Random)


class DemoServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the :class:`DemoApp` its handlers use."""

    daemon_threads = True

    def __init__(self, app: DemoApp, host: str, port: int) -> None:
        self.app = app
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0)."""
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # Name request threads like a Java servlet pool, so log lines read [http-exec-7].
        threading.current_thread().name = f"http-exec-{next(_worker_numbers)}"
        super().setup()

    def do_GET(self) -> None:
        app = self.server.app
        if self.path == WORK_ROUTE:
            self._serve_work(app)
        elif self.path == "/healthz":
            self._send_json(200, {"status": "ok", "version": app.version, "node": app.node})
        elif self.path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, app.metrics.exposition())
        else:
            self._send_json(404, {"error": f"no route {self.path}"})

    def _serve_work(self, app: DemoApp) -> None:
        started = time.perf_counter()
        request_id = uuid.uuid4()
        status = work.perform(app.profile, app.rng)
        elapsed = time.perf_counter() - started
        app.metrics.observe(WORK_ROUTE, status, elapsed)
        _http_log.info(
            "GET / %d in %d ms request_id=%s", status, round(elapsed * 1000), request_id
        )
        body = {"node": app.node, "version": app.version, "request_id": str(request_id)}
        body["status"] = "ok" if status == 200 else "error"
        self._send_json(status, body)

    def _send_json(self, status: int, body: dict[str, str]) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Silenced: every request is already logged to the log file by ``_serve_work``."""
