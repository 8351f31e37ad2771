"""The demo service as a real process: it listens, serves, scrapes, logs and shuts down."""

import json
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")
DEADLINE_S = 10.0


class Node:
    """A running ``python -m vigil_demo`` process and what it printed."""

    def __init__(self, process: subprocess.Popen[str], port: int, log_file: Path) -> None:
        self.process = process
        self.port = port
        self.log_file = log_file

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as reply:
            return reply.read().decode()

    def request_count(self) -> float:
        for family in text_string_to_metric_families(self.get("/metrics")):
            for sample in family.samples:
                if sample.name == "http_request_duration_seconds_count":
                    return sample.value
        return 0.0

    def log_text(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""


def _eventually(probe: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            result = probe()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"not within {DEADLINE_S} s: {what}")


def _read_listening_line(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], DEADLINE_S)
    assert ready, "the service printed nothing"
    return json.loads(process.stdout.readline())


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[[str], Node]]:
    processes: list[subprocess.Popen[str]] = []

    def start(version: str) -> Node:
        log_file = tmp_path / f"{version}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "vigil_demo", "--node", f"node-{version}", "--version",
             version, "--port", "0", "--log-file", str(log_file), "--rps", "40"],
            stdout=subprocess.PIPE, text=True,
        )
        processes.append(process)
        line = _read_listening_line(process)
        assert line["event"] == "listening"
        return Node(process, int(line["port"]), log_file)

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_the_service_reports_health_serves_metrics_and_logs(start_node) -> None:
    node = start_node("v1")
    health = json.loads(_eventually(lambda: node.get("/healthz"), "healthz answers"))
    assert health == {"status": "ok", "version": "v1", "node": "node-v1"}
    first = _eventually(node.request_count, "requests are counted")
    _eventually(lambda: node.request_count() > first, "the request count grows")
    assert 'demo_build_info{node="node-v1",version="v1"} 1.0' in node.get("/metrics")
    _eventually(lambda: " INFO [" in node.log_text(), "request lines reach the log")
    assert " demo.http - GET / 200 in " in node.log_text()


def test_v2_logs_null_pointer_exceptions_and_v1_does_not(start_node) -> None:
    v1, v2 = start_node("v1"), start_node("v2")
    _eventually(lambda: "java.lang.NullPointerException" in v2.log_text(), "v2 logs the NPE")
    assert 'http_requests_total{status="500"}' in v2.get("/metrics")
    _eventually(lambda: v1.log_text().count(" demo.http - GET / ") >= 40, "v1 served 40")
    assert "NullPointerException" not in v1.log_text()
    assert 'status="500"' not in v1.get("/metrics")


def test_the_service_exits_cleanly_on_sigterm(start_node) -> None:
    node = start_node("v3")
    _eventually(lambda: node.get("/healthz"), "healthz answers")
    node.process.terminate()
    assert node.process.wait(timeout=5) == 0
    assert "Shutting down node node-v3" in node.log_text()
